"""How runs show in the MLflow UI: the experiment tagged as model training, each run named by its label and the
pair sets it trains and is evaluated on logged as dataset inputs (name, source, digest), against real sqlite
stores in tmp_path; end to end through Kedro sessions, kedro-mlflow and the project's hooks in a project copy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rewardlab.pipelines import tracking
from rewardlab.run_identity import run_identity
from rewardlab.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

PROJECT_ROOT = Path(__file__).resolve().parents[1]
KIND = {tracking.EXPERIMENT_KIND_TAG: tracking.MODEL_TRAINING_KIND}


def _pairs(prefix: str, n: int, chat: bool = False) -> pd.DataFrame:
    def text(role: str, content: str):
        return [{"role": role, "content": content}] if chat else content

    return pd.DataFrame({
        "id": [f"{prefix}-{i}" for i in range(n)],
        "prompt": [text("user", f"{prefix} question {i}") for i in range(n)],
        "chosen": [text("assistant", f"good answer {i}") for i in range(n)],
        "rejected": [text("assistant", f"bad answer {i}") for i in range(n)],
        "margin": [1.0] * n,
        "source": ["test"] * n,
    })


# ---- configuration ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", [None, "gpu"])
def test_experiments_are_created_as_model_training(env):
    from kedro_mlflow.config.kedro_mlflow_config import KedroMlflowConfig

    loader = CONFIG_LOADER_CLASS(conf_source=str(PROJECT_ROOT / "conf"), env=env, **CONFIG_LOADER_ARGS)
    config = KedroMlflowConfig.model_validate(loader["mlflow"])
    assert config.tracking.experiment.create_experiment_kwargs.tags == KIND
    assert config.tracking.run.name is None  # the hook names each run


def test_the_experiment_kind_is_one_the_mlflow_ui_knows():
    import mlflow

    bundle = Path(mlflow.__file__).parent / "server" / "js" / "build" / "static" / "js"
    sources = [path.read_text(errors="replace") for path in bundle.glob("main.*.js")]
    assert sources, f"no MLflow UI bundle under {bundle}"
    assert any(f'"{tracking.EXPERIMENT_KIND_TAG}"' in text for text in sources)
    assert any(f'CUSTOM_MODEL_DEVELOPMENT="{tracking.MODEL_TRAINING_KIND}"' in text for text in sources)


def test_an_experiment_made_before_gets_the_missing_tags_and_keeps_its_own(tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    bare = client.create_experiment("bare", artifact_location=str(tmp_path / "a"))
    chosen = client.create_experiment("chosen", artifact_location=str(tmp_path / "b"),
                                      tags={tracking.EXPERIMENT_KIND_TAG: "genai_development"})
    assert tracking.add_missing_experiment_tags(client, "bare", KIND) == KIND
    assert client.get_experiment(bare).tags[tracking.EXPERIMENT_KIND_TAG] == tracking.MODEL_TRAINING_KIND
    assert tracking.add_missing_experiment_tags(client, "bare", KIND) == {}
    assert tracking.add_missing_experiment_tags(client, "chosen", KIND) == {}
    assert client.get_experiment(chosen).tags[tracking.EXPERIMENT_KIND_TAG] == "genai_development"
    assert tracking.add_missing_experiment_tags(client, "absent", KIND) == {}


# ---- run names and dataset inputs, unit by unit -------------------------------------------------------------


def test_runs_that_train_or_evaluate_are_named_by_their_label():
    parameters = {"grm_train": {"variant": "bt", "noise_rate": 0.1, "seed": 3}}
    label = run_identity(parameters).label
    assert label.startswith("bt__noise0.1__seed3")
    for blocks in (["grm_train"], ["ood_eval"], ["bon"], ["world", "ingest", "grm_train"]):
        assert tracking.run_name(parameters, blocks) == label
    assert tracking.run_name(parameters, ["world"]) is None
    assert tracking.run_name(parameters, ["ingest"]) is None


@pytest.mark.parametrize(("name", "context"), [
    ("noisy_train_pairs", "training"), ("validation_pairs", "evaluation"), ("world_test_pairs", "evaluation"),
    ("world_ood_prompt_pairs", "evaluation"), ("world_ood_both_pairs", "evaluation"),
    ("extra_eval_sets", "evaluation"), ("train_pairs", None), ("world_eval_responses", None),
    ("world_train_pairs", None), ("reward_model", None),
])
def test_dataset_contexts(name, context):
    assert tracking.dataset_context(name) == context


def test_the_digest_sees_chat_messages_that_mlflows_own_leaves_out(tmp_path):
    from mlflow.data.digest_utils import compute_pandas_digest

    pairs = _pairs("p", 20, chat=True)
    flipped = pairs.copy()
    flipped.loc[:4, ["chosen", "rejected"]] = flipped.loc[:4, ["rejected", "chosen"]].to_numpy()
    assert compute_pandas_digest(pairs) == compute_pandas_digest(flipped)  # why pairs_digest exists
    assert tracking.pairs_digest(pairs) != tracking.pairs_digest(flipped)
    # Parquet gives messages back as numpy arrays: the same pairs, the same digest.
    pairs.to_parquet(tmp_path / "pairs.parquet")
    assert tracking.pairs_digest(pd.read_parquet(tmp_path / "pairs.parquet")) == tracking.pairs_digest(pairs)
    assert len(tracking.pairs_digest(pairs)) == 8


def test_a_pair_set_becomes_an_mlflow_dataset_with_its_types(tmp_path):
    path = tmp_path / "pairs.parquet"
    _pairs("p", 300, chat=True).to_parquet(path)
    frame = pd.read_parquet(path)
    dataset = tracking.pairs_dataset(frame, "noisy_train_pairs", str(path))
    entity = dataset._to_mlflow_entity()
    assert (entity.name, entity.digest, entity.source_type) == ("noisy_train_pairs", tracking.pairs_digest(frame),
                                                               "local")
    assert json.loads(entity.source) == {"uri": str(path)}
    assert json.loads(entity.profile)["num_rows"] == 300
    columns = {spec["name"]: spec for spec in json.loads(entity.schema)["mlflow_colspec"]}
    assert columns["prompt"]["type"] == "array" and columns["margin"]["type"] == "double"
    hub = tracking.pairs_dataset(_pairs("h", 3), "held_out", "some-org/some-pairs")
    assert hub.source._get_source_type() == "hugging_face"


def test_the_hook_names_the_run_before_kedro_mlflow_opens_it_and_after_the_parameter_check():
    """pluggy calls `tryfirst` hooks first, the last registered of them first; plain ones after, the plugins'
    (registered after the project's) first; `trylast` ones last."""
    from kedro.framework.hooks.manager import _create_hook_manager, _register_hooks
    from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

    from rewardlab.hooks import MlflowRunDescriptionHooks, RunGuardHooks, SignalHooks
    from rewardlab.settings import HOOKS

    manager = _create_hook_manager()
    _register_hooks(manager, HOOKS)
    _register_hooks(manager, [MlflowHook()])

    def call_order(hook_name: str) -> list[type]:
        return [type(impl.plugin) for impl in reversed(getattr(manager.hook, hook_name).get_hookimpls())]

    before = call_order("before_pipeline_run")
    assert before.index(RunGuardHooks) < before.index(MlflowRunDescriptionHooks) < before.index(MlflowHook)
    assert before[-1] is SignalHooks
    created = call_order("after_context_created")
    assert created.index(MlflowHook) < created.index(MlflowRunDescriptionHooks)


# ---- end to end: Kedro sessions in a copy of the project ----------------------------------------------------

# Stand-ins for the project's pipelines, with the same names, parameters and catalog entries: fast nodes that
# read and write what the real ones do, so the sessions, kedro-mlflow and the project's hooks run as in `kedro run`.
STAND_IN_PIPELINES = '''
import pandas as pd
from kedro.pipeline import Pipeline, node

from rewardlab.pipelines.ood_eval.nodes import load_extra_sets


def pairs(prefix, n, chat=False):
    def text(role, content):
        return [{"role": role, "content": content}] if chat else content

    return pd.DataFrame({"id": [f"{prefix}-{i}" for i in range(n)],
                         "prompt": [text("user", f"{prefix} question {i}") for i in range(n)],
                         "chosen": [text("assistant", f"good answer {i}") for i in range(n)],
                         "rejected": [text("assistant", f"bad answer {i}") for i in range(n)],
                         "margin": [1.0] * n, "source": ["world"] * n})


def make_world(params):
    return pairs("test", 6), pairs("ood", 5)


def split(params):
    return pairs("train", 8, chat=True), pairs("validation", 4, chat=True)


def inject_noise(train, params):
    noisy = train.copy()
    noisy.loc[:1, ["chosen", "rejected"]] = noisy.loc[:1, ["rejected", "chosen"]].to_numpy()
    return noisy


def fit(train, validation, parameters):
    return len(train)


def evaluate(model, test, ood_prompt, extra_sets):
    assert model and len(test) and len(ood_prompt) and extra_sets


def register_pipelines():
    return {
        "world": Pipeline([node(make_world, "params:world", ["world_test_pairs", "world_ood_prompt_pairs"])]),
        "ingest": Pipeline([node(split, "params:ingest", ["train_pairs", "validation_pairs"])]),
        "grm_train": Pipeline([node(inject_noise, ["train_pairs", "params:grm_train"], "noisy_train_pairs"),
                               node(fit, ["noisy_train_pairs", "validation_pairs", "parameters"], "fitted")]),
        "ood_eval": Pipeline([node(load_extra_sets, "params:ood_eval", "extra_eval_sets"),
                              node(evaluate, ["fitted", "world_test_pairs", "world_ood_prompt_pairs",
                                              "extra_eval_sets"], None)]),
    }
'''

SESSIONS_SCRIPT = """
import json
import sys
from pathlib import Path

from kedro.framework.project import pipelines
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

bootstrap_project(Path.cwd())
pipelines.configure("stand_in_pipelines")
with KedroSession.create(project_path=Path.cwd()) as session:
    session.run(pipeline_names=json.loads(sys.argv[1]))
"""
# One process each, as `kedro run`: kedro-mlflow leaves its run active until the process exits.
SESSIONS = [["world"], ["ingest"], ["grm_train", "ood_eval"]]


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project copy whose store already holds the `rewardlab` experiment, made before its kind was configured,
    after `kedro run` of world, ingest, then grm_train with ood_eval (the stand-ins)."""
    from mlflow.tracking import MlflowClient

    project = tmp_path_factory.mktemp("tracking") / "project"
    (project / "src").mkdir(parents=True)
    shutil.copy(PROJECT_ROOT / "pyproject.toml", project)
    shutil.copytree(PROJECT_ROOT / "conf" / "base", project / "conf" / "base")
    held_out = project / "held_out.parquet"
    _pairs("held", 3).to_parquet(held_out)
    local = {"ood_eval": {"extra_sets": [{"name": "held_out", "kind": "world", "path": str(held_out)}]}}
    (project / "conf" / "local").mkdir(parents=True)
    (project / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(local))
    (project / "stand_in_pipelines.py").write_text(textwrap.dedent(STAND_IN_PIPELINES))
    MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}").create_experiment(
        "rewardlab", artifact_location=str(project / "mlartifacts"))
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    environ |= {"KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    for names in SESSIONS:
        result = subprocess.run([sys.executable, "-c", SESSIONS_SCRIPT, json.dumps(names)], cwd=project,
                                env=environ, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-8000:]
    return project


@pytest.fixture(scope="module")
def store(project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rewardlab")
    runs = client.search_runs([experiment.experiment_id], order_by=["attributes.start_time ASC"])
    return experiment, runs


def _label(project: Path) -> str:
    loader = CONFIG_LOADER_CLASS(conf_source=str(project / "conf"), **CONFIG_LOADER_ARGS)
    return run_identity(loader["parameters"]).label


def _inputs(run) -> dict[str, tuple[object, str]]:
    return {item.dataset.name: (item.dataset, {t.key: t.value for t in item.tags}["mlflow.data.context"])
            for item in run.inputs.dataset_inputs}


@pytest.mark.slow
def test_the_existing_experiment_is_tagged_as_model_training(store):
    experiment, _ = store
    assert experiment.tags.get(tracking.EXPERIMENT_KIND_TAG) == tracking.MODEL_TRAINING_KIND


@pytest.mark.slow
def test_runs_are_named_by_label_and_the_others_by_pipeline(project, store):
    _, runs = store
    assert [run.info.run_name for run in runs] == ["world", "ingest", _label(project)]
    assert all(run.info.status == "FINISHED" for run in runs)


@pytest.mark.slow
def test_the_training_run_logs_its_training_and_evaluation_sets(project, store):
    _, runs = store
    inputs = _inputs(runs[-1])
    assert {name: context for name, (_, context) in inputs.items()} == {
        "noisy_train_pairs": "training", "validation_pairs": "evaluation", "world_test_pairs": "evaluation",
        "world_ood_prompt_pairs": "evaluation", "held_out": "evaluation",
    }
    noisy, _ = inputs["noisy_train_pairs"]
    [saved] = (project / "data" / "05_model_input" / "noisy_train_pairs.parquet").glob("*/noisy_train_pairs.parquet")
    assert json.loads(noisy.source) == {"uri": str(saved)}  # the version this run saved and read back
    assert noisy.digest == tracking.pairs_digest(pd.read_parquet(saved))
    assert json.loads(noisy.profile)["num_rows"] == 8
    world_test, _ = inputs["world_test_pairs"]
    assert json.loads(world_test.source) == {"uri": str(project / "data" / "01_raw" / "world" / "test_pairs.parquet")}
    held_out, _ = inputs["held_out"]
    assert json.loads(held_out.source) == {"uri": str(project / "held_out.parquet")}
    assert len({dataset.digest for dataset, _ in inputs.values()}) == len(inputs)


@pytest.mark.slow
def test_runs_that_only_make_data_log_no_inputs(store):
    _, runs = store
    assert [len(run.inputs.dataset_inputs) for run in runs[:2]] == [0, 0]
