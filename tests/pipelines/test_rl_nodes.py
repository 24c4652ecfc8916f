"""The rl pipeline's nodes: the prompts a policy is trained and evaluated on, one short policy optimization of a
tiny policy against a tiny reward model (its curves, its per-step MLflow metrics, its state under the run label,
a second run resumed from it), the reports over every run, and how the pipeline is wired into the project."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_tiny import TINY_TEXTS, build_tiny_tokenizer, save_tiny_base, sqlite_tracking_store  # noqa: E402

from rewardlab.config import PIPELINE_CONFIGS, RlPipelineConfig  # noqa: E402
from rewardlab.hooks import missing_inputs_message  # noqa: E402
from rewardlab.modeling import RewardModel  # noqa: E402
from rewardlab.pipeline_registry import register_pipelines  # noqa: E402
from rewardlab.pipelines.rl.nodes import compare_rl, optimize_policy, policy_prompts, split_prompts  # noqa: E402
from rewardlab.rl.config import RlConfig  # noqa: E402
from rewardlab.rl.report import IDENTITY_COLUMNS, rl_gold_peaks  # noqa: E402
from rewardlab.run_identity import run_identity  # noqa: E402
from rewardlab.schema import DataValidationError  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CHAT_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
# Two steps of two prompts x two completions of four tokens, evaluated after every step.
TINY_RL = {"steps": 2, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 4, "eval_every": 1,
           "num_eval_prompts": 2, "eval_samples_per_prompt": 2, "save_every": 1, "score_batch_size": 8,
           "max_length": 64, "min_response_tokens": 8, "learning_rate": 1e-2}


def _prompt(text: str) -> str:
    return text.split("Assistant:")[0] + "Assistant:"


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, str]:
    base, tokenizer = save_tiny_base(tmp_path_factory.mktemp("policy") / "base_model")
    torch.manual_seed(3)
    reward_dir = tmp_path_factory.mktemp("rm") / "reward_model"
    RewardModel.from_base(base).save_pretrained(reward_dir, tokenizer=tokenizer)
    return {"policy": str(base), "reward_model": str(reward_dir)}


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A real sqlite tracking store and Model Registry for the module; each test registers its own names."""
    yield from sqlite_tracking_store(tmp_path_factory.mktemp("mlflow"), "rl")


# ---- prompts ---------------------------------------------------------------------------------------------------

def test_prompts_are_distinct_non_empty_texts_in_order():
    tokenizer = build_tiny_tokenizer()
    prompts = ["Human: b Assistant:", "", "Human: a Assistant:", "Human: b Assistant:", "  "]
    assert policy_prompts(prompts, tokenizer) == ["Human: b Assistant:", "Human: a Assistant:"]


def test_chat_prompts_are_rendered_up_to_the_reply_without_the_bos_token():
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    conversation = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                    {"role": "user", "content": "Bread?"}]
    pairs = pd.DataFrame({"prompt": [conversation, conversation[:1]]})
    assert policy_prompts(pairs["prompt"], tokenizer) == [
        "<|user|>Hi\n<|assistant|>Hello\n<|user|>Bread?\n<|assistant|>", "<|user|>Hi\n<|assistant|>"]
    # Without a chat template, the project's own rendering.
    assert policy_prompts([conversation[:1]], build_tiny_tokenizer()) == ["\n\nHuman: Hi\n\nAssistant:"]


def test_evaluation_prompts_are_held_out_of_training():
    tokenizer = build_tiny_tokenizer()
    train = ["Human: one Assistant:", "Human: two Assistant:", "", "Human: three Assistant:"]
    training, evaluation = split_prompts(train, ["Human: two Assistant:", "Human: four Assistant:"], tokenizer)
    assert training == ["Human: one Assistant:", "Human: three Assistant:"]
    assert evaluation == ["Human: two Assistant:", "Human: four Assistant:"]
    with pytest.raises(DataValidationError, match="No training prompt"):
        split_prompts(["", "Human: two Assistant:"], ["Human: two Assistant:"], tokenizer)
    with pytest.raises(DataValidationError, match="No evaluation prompt"):
        split_prompts(train, [" "], tokenizer)


# ---- one short optimization ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def optimized(models, mlflow_store, tmp_path_factory):
    """optimize_policy run twice on one state folder, each time inside its own MLflow run, with what the training
    logged each time."""
    import logging

    import mlflow

    state_root = tmp_path_factory.mktemp("rl_state")
    parameters = {"grm_train": {"variant": "bt", "noise_rate": 0.0, "seed": 1},
                  "rl": {**TINY_RL, "state_dir": str(state_root)}}
    train_pairs = pd.DataFrame({"prompt": [_prompt(text) for text in TINY_TEXTS[:6]] + [_prompt(TINY_TEXTS[0])]})
    eval_prompts = pd.DataFrame({"prompt": ["Human: Where is Paris? Assistant:", "Human: Name a fruit. Assistant:"]})
    runs, logs = [], []
    handler = logging.Handler()
    handler.emit = lambda record: logs[-1].append(record.getMessage())
    logger = logging.getLogger("rewardlab.rl.train")
    logger.addHandler(handler)
    level, logger.level = logger.level, logging.INFO
    try:
        for _ in range(2):
            logs.append([])
            with mlflow.start_run() as run:
                outputs = optimize_policy(models["policy"], models["reward_model"], train_pairs, eval_prompts,
                                          parameters["rl"], parameters)
            runs.append((run.info.run_id, outputs))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    return {"parameters": parameters, "state_root": state_root, "runs": runs, "logs": logs}


def test_the_policy_curves_and_run_partition_are_labelled_by_the_run(optimized, models):
    _, (policy, curves, metrics, by_run) = optimized["runs"][0]
    label = run_identity(optimized["parameters"]).label
    assert label.startswith("bt__noise0__seed1__")  # the rl settings that differ from the defaults are in it
    assert list(by_run) == [label]
    pd.testing.assert_frame_equal(by_run[label], curves)
    assert list(curves.columns[:4]) == IDENTITY_COLUMNS and (curves["run"] == label).all()
    assert (curves["variant"] == run_identity(optimized["parameters"]).variant_label).all()
    assert (curves["noise"] == 0.0).all() and (curves["seed"] == 1).all()
    train, evaluation = curves[curves["split"] == "train"], curves[curves["split"] == "eval"]
    assert train["step"].tolist() == [1, 2] and evaluation["step"].tolist() == [0, 1, 2]
    assert curves[["kl", "proxy", "gold", "length"]].notna().all().all()
    assert evaluation["kl"].iloc[0] == pytest.approx(0.0, abs=1e-6)  # the initial policy is its own reference
    assert isinstance(policy["model"], torch.nn.Module) and hasattr(policy["model"], "save_pretrained")
    assert policy["tokenizer"].get_vocab() == AutoTokenizer.from_pretrained(models["policy"]).get_vocab()


def test_the_gold_peak_is_returned_as_run_metrics(optimized):
    _, (_, curves, metrics, _) = optimized["runs"][0]
    (peak,) = rl_gold_peaks(curves).itertuples(index=False)
    assert metrics["peak.gold"]["value"] == pytest.approx(peak.gold_at_peak)
    assert metrics["peak.step"]["value"] == peak.step_at_peak
    assert metrics["end.step"]["value"] == 2
    assert metrics["end.gold"]["value"] == pytest.approx(curves[curves["split"] == "eval"]["gold"].iloc[-1])
    assert metrics["gold_fell_after_peak"]["value"] == float(peak.fell_after_peak)


def test_per_step_metrics_reach_the_active_mlflow_run(optimized, mlflow_store):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_store)
    run_id, (_, curves, _, _) = optimized["runs"][0]
    for split, steps in (("train", [1, 2]), ("eval", [0, 1, 2])):
        rows = curves[curves["split"] == split]
        for column in ("proxy", "gold", "kl", "length", "marker_fraction"):
            history = sorted((m.step, m.value) for m in client.get_metric_history(run_id, f"rl.{split}.{column}"))
            assert [step for step, _ in history] == steps, (split, column)
            assert [value for _, value in history] == pytest.approx(rows[column].tolist(), rel=1e-6)
    assert client.get_run(run_id).data.tags["run_label"] == run_identity(optimized["parameters"]).label


def test_a_second_run_resumes_from_the_state_of_its_label(optimized, mlflow_store):
    from mlflow.tracking import MlflowClient

    (_, first), (second_id, second) = optimized["runs"]
    label = run_identity(optimized["parameters"]).label
    assert [p.name for p in Path(optimized["state_root"]).iterdir()] == [label]
    assert not any("Resuming" in line for line in optimized["logs"][0])
    assert any("Resuming" in line and label in line for line in optimized["logs"][1]), optimized["logs"][1]
    pd.testing.assert_frame_equal(second[1], first[1])
    for name, weight in first[0]["model"].state_dict().items():
        torch.testing.assert_close(second[0]["model"].state_dict()[name], weight)
    # The resumed run's MLflow run holds the whole curve too.
    history = MlflowClient(mlflow_store).get_metric_history(second_id, "rl.eval.gold")
    assert sorted(m.step for m in history) == [0, 1, 2]


def test_the_policy_saves_and_loads_as_a_causal_lm(optimized, tmp_path):
    from rewardlab.datasets import PretrainedDataset

    _, (policy, _, _, _) = optimized["runs"][0]
    dataset = PretrainedDataset(filepath=str(tmp_path / "rl_policy"), kind="causal_lm")
    dataset.save(policy)
    loaded = dataset.load()
    assert type(loaded["model"]) is type(policy["model"])
    ids = policy["tokenizer"]("Human: hi Assistant:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        torch.testing.assert_close(loaded["model"](ids).logits, policy["model"].eval()(ids).logits)


# ---- reports ---------------------------------------------------------------------------------------------------

def test_the_reports_cover_every_run_so_far(optimized):
    _, (_, curves, _, _) = optimized["runs"][0]
    other = curves.assign(run="grm_sft__noise0.25__seed0", variant="grm_sft", noise=0.25, seed=0,
                          gold=curves["gold"] + 1.0)
    figure, markdown = compare_rl({"a": lambda: curves, "b": lambda: other})
    gold_ax, proxy_ax = figure.axes
    assert len(proxy_ax.get_lines()) == 2
    assert markdown.startswith("# Policy optimization: gold peaks")
    for label in (curves["run"].iloc[0], "grm_sft__noise0.25__seed0"):
        assert f"| {label} |" in markdown
    header = next(line for line in markdown.splitlines() if line.startswith("| run |"))
    assert header.split(" | ")[:4] == ["| run", "variant", "noise", "seed"] and "fell_after_peak" in header


# ---- wiring ----------------------------------------------------------------------------------------------------

def test_the_rl_config_is_the_core_config_plus_where_state_is_kept():
    assert PIPELINE_CONFIGS["rl"] is RlPipelineConfig and issubclass(RlPipelineConfig, RlConfig)
    assert set(RlPipelineConfig.model_fields) - set(RlConfig.model_fields) == {"state_dir"}
    assert "state_dir" in RlPipelineConfig.observational_fields()


def test_rl_is_registered_apart_from_the_default_run():
    pipelines = register_pipelines()
    rl = pipelines["rl"]
    assert {node.name for node in rl.nodes} == {"optimize_policy", "compare_rl"}
    assert rl.inputs() == {"base_model", "reward_model", "train_pairs", "bon_prompts", "params:rl", "parameters"}
    assert not {node.name for node in rl.nodes} & {node.name for node in pipelines["__default__"].nodes}


@pytest.mark.parametrize("env", ["base", "gpu"])
def test_every_rl_output_is_a_catalog_entry(env):
    catalog = yaml.safe_load((PROJECT_ROOT / "conf" / env / "catalog.yml").read_text())
    base = yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text())
    for name in register_pipelines()["rl"].all_outputs():
        entry = catalog.get(name) or base[name]
        assert entry["type"], name
    assert base["rl_policy"]["versioned"] is True and base["rl_policy"]["type"].endswith("PretrainedDataset")
    assert base["rl_curves_by_run"]["type"] == "partitions.PartitionedDataset"


def test_missing_inputs_name_the_one_command_that_makes_them(tmp_path, monkeypatch):
    from kedro.io import DataCatalog

    monkeypatch.chdir(tmp_path)  # the catalog's relative paths: nothing exists here
    catalog = DataCatalog.from_config(yaml.safe_load((PROJECT_ROOT / "conf" / "base" / "catalog.yml").read_text()))
    pipelines = register_pipelines()
    message = missing_inputs_message(pipelines["rl"], catalog, pipelines)
    for name, maker in (("base_model", "world"), ("bon_prompts", "world"), ("train_pairs", "ingest"),
                        ("reward_model", "grm_train")):
        assert f"'{name}' does not exist yet: make it with `kedro run --pipelines {maker}`" in message
    assert "Make them all with `kedro run --pipelines world,ingest,grm_train`." in message
    # One pipeline to run: no second command.
    single = missing_inputs_message(pipelines["ingest"], catalog, pipelines)
    assert "`kedro run --pipelines world`" in single and "Make them all" not in single


def test_the_grid_finds_rl_results_where_the_catalog_of_the_environment_puts_them(monkeypatch):
    from rewardlab.cli import PER_RUN_RESULTS, _results_dir

    monkeypatch.chdir(PROJECT_ROOT / "notebooks")
    assert PER_RUN_RESULTS["rl"] == "rl_curves_by_run"
    assert _results_dir(None, "rl_curves_by_run") == PROJECT_ROOT / "data" / "08_reporting" / "rl_curves_by_run"
    assert _results_dir("gpu", "rl_curves_by_run") == \
        PROJECT_ROOT / "data" / "gpu" / "08_reporting" / "rl_curves_by_run"
