# RewardLab: the two commands a new user needs are `make run` and `make test`; both set everything up.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
# Nothing in the project's own run paths calls out.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install run test grid rl-study viz viz-build mlflow-ui clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(BIN)/.installed

## Build the synthetic world, ingest, train a GRM, evaluate in and out of distribution, best-of-n.
run: install
	$(BIN)/kedro run

## The test suite (what CI runs).
test: install
	$(BIN)/python -m pytest tests

## The variant grid: every listed variant x noise rate x seed, each its own MLflow run, then the reports.
grid: install
	$(BIN)/kedro grid $(GRID_ARGS)

## Reward over-optimization: bt, grm_sft and bsr at label noise 0.25, seeds 0-4, each reward model optimized
## against (rl) and used for best-of-n; the world and ingested pairs first when they are not there yet; then the
## report docs/rl_study.md and its plot docs/rl_study.png (`python -m rewardlab.study`).
RL_STUDY_VARIANTS := bt,grm_sft,bsr
RL_STUDY_NOISE := 0.25
rl-study: install
	test -d data/03_primary/train_pairs.parquet || $(BIN)/kedro run --pipelines world,ingest
	$(BIN)/kedro grid --variants $(RL_STUDY_VARIANTS) --noise $(RL_STUDY_NOISE) --seeds 0,1,2,3,4 \
		--pipelines grm_train,ood_eval,bon,rl
	$(BIN)/python -m rewardlab.study --out docs/rl_study.md --png docs/rl_study.png \
		--noise $(RL_STUDY_NOISE) --variants $(RL_STUDY_VARIANTS)

## Kedro-Viz: an interactive server on $(HOST):4141, or a static site in build/.
viz: install
	$(BIN)/kedro viz run --host $(HOST) --port 4141 --no-browser
viz-build: install
	$(BIN)/kedro viz build

## MLflow UI on the project's tracking store (one worker keeps it light).
mlflow-ui: install
	$(BIN)/mlflow server --backend-store-uri sqlite:///mlflow.db --host $(HOST) --port 5000 --workers 1

clean:
	rm -rf data/0* mlflow.db mlartifacts build
