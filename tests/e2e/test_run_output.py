"""What a user sees from `kedro run` with its output piped (as in CI or `| tee`): no third-party warnings, one
line per log record, a summary once the run succeeded, and an expected failure ending with its message alone."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from project_copy import kedro, kedro_env, make_project_copy

pytestmark = pytest.mark.slow

KNOWN_WARNING_TEXTS = ("register_new_resolver", "Add type hints to the `predict` method")
BOX_DRAWING = ("╭", "│", "╰")
MISSING_INPUTS = "This run needs inputs that were never made"


@pytest.fixture(scope="module")
def piped_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """The default DAG on the tiny world, its output captured through pipes."""
    project = make_project_copy(tmp_path_factory.mktemp("piped"))
    return project, kedro(project, "run")


@pytest.fixture(scope="module")
def empty_project(tmp_path_factory) -> Path:
    """A fresh copy whose pipelines never ran."""
    return make_project_copy(tmp_path_factory.mktemp("empty"))


def _mlflow_run(project: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{(project / 'mlflow.db').as_posix()}")
    (run,) = client.search_runs([client.get_experiment_by_name("rewardlab").experiment_id])
    return run


def _assert_ends_with_message_alone(result: subprocess.CompletedProcess, message: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-6000:]
    assert f"Error: {message}" in result.stderr, output[-6000:]
    assert "Traceback" not in output, output[-6000:]
    assert not any(char in output for char in BOX_DRAWING), output[-6000:]


def test_the_default_run_prints_no_third_party_warnings(piped_run):
    _, result = piped_run
    output = result.stdout + result.stderr
    for text in KNOWN_WARNING_TEXTS:
        assert text not in output
    assert not re.search(r"\w*(Deprecation|Future)Warning", output), output[-6000:]


def test_log_records_arrive_one_per_line(piped_run):
    _, result = piped_run
    node_lines = [line for line in result.stdout.splitlines() if "Running node: " in line]
    assert node_lines, result.stdout[-6000:]
    # Each record whole on its line: time, level, logger, the node with its inputs and outputs.
    for line in node_lines:
        assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d INFO kedro\.pipeline\.node: Running node: .* -> \[.*\]$",
                        line), line
    assert max(map(len, node_lines)) > 120
    assert not any(char in result.stdout for char in BOX_DRAWING)


def test_a_successful_run_ends_with_its_summary(piped_run):
    project, result = piped_run
    run = _mlflow_run(project)
    metrics = run.data.metrics
    summary = result.stdout[result.stdout.rindex("Pipeline execution completed"):].splitlines()[1:]
    assert f"Run finished: MLflow run {run.info.run_id}" in summary
    (accuracy,) = [line for line in summary if line.lstrip().startswith("Accuracy:")]
    for name in ("test", "ood_prompt", "ood_response", "ood_both"):
        assert f"{name} {metrics[f'eval.{name}.accuracy']:.4g}" in accuracy
    (training,) = [line for line in summary if line.lstrip().startswith("Training:")]
    assert f"loss {metrics['loss']:.4g}" in training
    assert any(line.lstrip().startswith("Best-of-n: ") for line in summary)
    reports = [line.split()[-1] for line in summary if "data/08_reporting/" in line]
    for report in ("data/08_reporting/comparison.md", "data/08_reporting/bon_peaks.md"):
        assert report in reports
    assert all((project / report).exists() for report in reports)
    (ui,) = [line for line in summary if line.lstrip().startswith("MLflow UI:")]
    assert f"server --backend-store-uri sqlite:///{(project / 'mlflow.db').as_posix()} --host 127.0.0.1" in ui
    assert summary[-2].strip() == f"then open http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}" \
                                  f"/runs/{run.info.run_id}"
    assert summary[-1].strip() == f"or every run: http://127.0.0.1:5000/#/experiments/{run.info.experiment_id}" \
                                  "?workflowType=machine_learning"


def test_inputs_never_made_end_with_the_message_alone(empty_project):
    result = kedro(empty_project, "run", "--pipeline", "grm_train", check=False)
    _assert_ends_with_message_alone(result, MISSING_INPUTS)
    assert "make it with `kedro run --pipelines world`" in result.stderr


def test_a_bad_parameter_ends_with_the_message_alone(empty_project):
    result = kedro(empty_project, "run", "--pipelines", "world", "--params", "world.vocab_size=lots", check=False)
    _assert_ends_with_message_alone(result, "")
    error = result.stderr[result.stderr.index("Error: "):]
    assert "vocab_size" in error and "'lots'" in error, result.stderr


def test_bad_data_found_inside_a_node_ends_with_the_message_alone(tmp_path):
    import pandas as pd

    project = make_project_copy(tmp_path / "p")
    raw = project / "data" / "01_raw" / "world" / "train_pairs.parquet"  # raw_train_pairs, with no `rejected`
    raw.parent.mkdir(parents=True)
    pd.DataFrame({"prompt": ["a prompt"], "chosen": ["an answer"]}).to_parquet(raw)
    result = kedro(project, "run", "--pipelines", "ingest", check=False)
    _assert_ends_with_message_alone(result, f"{raw}: ")
    assert re.search(r"Node ingest_pairs: .* failed with error", result.stdout), result.stdout[-6000:]


def test_python_m_rewardlab_runs_the_projects_run_command(empty_project):
    result = subprocess.run([sys.executable, "-m", "rewardlab", "--pipelines", "grm_train"], cwd=empty_project,
                            env=kedro_env(), capture_output=True, text=True, timeout=600)
    _assert_ends_with_message_alone(result, MISSING_INPUTS)


def test_any_other_failure_keeps_its_traceback(empty_project):
    result = kedro(empty_project, "run", "--nodes", "no_such_node", check=False)
    assert result.returncode != 0
    assert "Traceback (most recent call last)" in result.stderr
    assert "ValueError: Pipeline does not contain nodes named ['no_such_node']" in result.stderr
