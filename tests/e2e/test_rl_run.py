"""Policy optimization as a user runs it: `kedro run --pipelines rl` on a fresh project stops at once naming the
command that makes its inputs; after world, ingest and grm_train it trains the policy, writes its curves, gold
peaks and plot, versions the policy, tracks the run in MLflow and tells `kedro grid` the point is done."""

from __future__ import annotations

import pandas as pd
import pytest
from project_copy import TINY_PARAMETERS, kedro, make_project_copy, mlflow_runs, project_run_label

pytestmark = pytest.mark.slow

# Two steps of two prompts x two completions, evaluated at steps 0, 1 and 2 on the tiny world's held-out prompts.
RL_PARAMS = ("rl.steps=2,rl.prompts_per_step=2,rl.group_size=2,rl.max_new_tokens=8,rl.eval_every=1,"
             "rl.num_eval_prompts=2,rl.eval_samples_per_prompt=2,rl.save_every=1,rl.max_length=96")


def _runtime_params(text: str) -> dict:
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.from_dotlist(text.split(",")))




def test_rl_on_a_fresh_project_stops_at_once_naming_the_command(tmp_path):
    project = make_project_copy(tmp_path / "p")
    result = kedro(project, "run", "--pipelines", "rl", check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    for name, maker in (("base_model", "world"), ("bon_prompts", "world"), ("train_pairs", "ingest"),
                        ("reward_model", "grm_train")):
        assert f"'{name}' does not exist yet: make it with `kedro run --pipelines {maker}`" in output, output[-3000:]
    assert "Make them all with `kedro run --pipelines world,ingest,grm_train`" in output
    assert "Error: This run needs inputs that were never made" in result.stderr
    assert "Traceback" not in output
    assert not (project / "data").exists() or not any(p.is_file() for p in (project / "data").rglob("*"))
    assert mlflow_runs(project) == []


def test_rl_after_world_ingest_and_grm_train(tmp_path):
    from mlflow.tracking import MlflowClient
    from transformers import AutoModelForCausalLM

    project = make_project_copy(tmp_path / "p", TINY_PARAMETERS)
    result = kedro(project, "run", "--pipelines", "world,ingest,grm_train,rl", "--params", RL_PARAMS, timeout=1200)
    label = project_run_label(project, _runtime_params(RL_PARAMS))
    data = project / "data"

    curves = pd.read_csv(data / "08_reporting" / "rl_curves.csv")
    assert (curves["run"] == label).all()
    assert curves.loc[curves["split"] == "train", "step"].tolist() == [1, 2]
    assert curves.loc[curves["split"] == "eval", "step"].tolist() == [0, 1, 2]
    assert curves[["kl", "proxy", "gold", "length", "marker_fraction"]].notna().all().all()
    pd.testing.assert_frame_equal(pd.read_csv(data / "08_reporting" / "rl_curves_by_run" / f"{label}.csv"), curves)
    peaks = (data / "08_reporting" / "rl_peaks.md").read_text()
    assert peaks.startswith("# Policy optimization: gold peaks") and f"| {label} |" in peaks
    assert (data / "08_reporting" / "rl_curves.png").stat().st_size > 1000
    assert [p.name for p in (data / "06_models" / "rl_state").iterdir()] == [label]

    (version,) = [p for p in (data / "06_models" / "rl_policy").iterdir() if not p.name.startswith(".")]
    policy_dir = version / "rl_policy"
    assert {"config.json", "tokenizer.json"} <= {p.name for p in policy_dir.iterdir()}
    policy = AutoModelForCausalLM.from_pretrained(str(policy_dir))
    base_dir = next(p for p in (data / "06_models" / "base_model").iterdir() if not p.name.startswith("."))
    base = AutoModelForCausalLM.from_pretrained(str(base_dir / "base_model"))
    assert any(not (a == b).all() for a, b in zip(policy.state_dict().values(), base.state_dict().values()))

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    (run,) = mlflow_runs(project)
    assert run.info.status == "FINISHED" and run.data.tags["run_label"] == label
    for key, steps in (("rl.train.proxy", [1, 2]), ("rl.train.gold", [1, 2]), ("rl.train.kl", [1, 2]),
                       ("rl.eval.gold", [0, 1, 2]), ("rl.eval.proxy", [0, 1, 2]), ("rl.eval.kl", [0, 1, 2])):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [step for step, _ in history] == steps, key
    eval_gold = curves.loc[curves["split"] == "eval", "gold"]
    assert run.data.metrics["rl.peak.gold"] == pytest.approx(eval_gold.max())
    assert run.data.metrics["rl.end.gold"] == pytest.approx(eval_gold.iloc[-1])
    assert run.data.params["rl.steps"] == "2"
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"rl_curves.csv", "rl_peaks.md", "rl_curves.png"} <= artifacts
    assert "Policy:" in result.stdout and "gold peaks at" in result.stdout

    # The grid knows this point is done: its rl results are there.
    grid = kedro(project, "grid", "--variants", "grm_sft", "--noise", "0.25", "--seeds", "0", "--pipelines", "rl",
                 "--params", RL_PARAMS)
    assert f"{label}: already evaluated, skipped" in grid.stdout


def test_a_bad_rl_parameter_stops_the_run_before_anything_happens(tmp_path):
    project = make_project_copy(tmp_path / "p")
    result = kedro(project, "run", "--pipelines", "rl", "--params", "rl.group_size=1,rl.algorithm=ppo", check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, output[-3000:]
    assert "rl.group_size must be >= 2, got 1" in output and "rl.algorithm must be one of 'rloo' or 'grpo'" in output
    assert "does not exist yet" not in output  # parameters are checked first
    assert not (project / "data").exists() or not any(p.is_file() for p in (project / "data").rglob("*"))
    assert mlflow_runs(project) == []
