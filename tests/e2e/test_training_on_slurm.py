"""`grm_train.train.launcher: slurm` in a real `kedro run`, through submitit's local executor (each task of the
job standing for one node): the training runs as one job of two "nodes", its per-step metrics reach the Kedro
run's MLflow run while it trains, and a SIGTERM to the Kedro run cancels the job, whose processes all end, and
leaves the run FAILED."""

from __future__ import annotations

import copy
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import yaml
from project_copy import (TINY_PARAMETERS, kedro, kedro_command, kedro_env, kill_tree, make_project_copy,
                          project_run_label, signal_and_reap)

pytestmark = pytest.mark.slow

ON_TWO_NODES = {"launcher": "slurm", "num_processes": 2, "num_machines": 2}


def _project(tmp_path: Path, tiny_project: Path, train: dict) -> Path:
    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters["grm_train"].update(variant="bt", export=False, log_checkpoint_artifact=False)
    parameters["grm_train"]["train"].update(ON_TWO_NODES, **train)
    project = make_project_copy(tmp_path / "p", parameters)
    for inputs in ("03_primary", "06_models/base_model"):  # grm_train's inputs, made by the tiny project's run
        shutil.copytree(tiny_project / "data" / inputs, project / "data" / inputs)
    settings = yaml.safe_load((project / "conf" / "slurm.yml").read_text())
    (project / "conf" / "slurm.yml").write_text(yaml.safe_dump({**settings, "cluster": "local", "time_min": 20}))
    return project


def _run(project: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rewardlab")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return client, (runs[0] if runs else None)


def _job_logs(project: Path, label: str) -> list[Path]:
    return sorted((project / "data" / "06_models" / "training_state" / label / "member0" / "launch" / "slurm")
                  .glob("*_log.out"))


def test_a_kedro_run_trains_as_one_two_node_slurm_job_and_logs_every_step(tiny_project, tmp_path):
    project = _project(tmp_path, tiny_project, {"max_steps": 6, "eval_every": 3, "checkpoint_every": 3})
    result = kedro(project, "run", "--pipelines", "grm_train")
    output = result.stdout + result.stderr
    assert "Training submitted as Slurm job" in output and "(local: 2 nodes x 1 processes)" in output, output
    client, run = _run(project)
    assert run.info.status == "FINISHED"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "loss")] == [1, 2, 3, 4, 5, 6]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "eval_accuracy")] == [3, 6]
    # One task per node, each of which started its node's launcher (torchrun: node rank 0 and 1).
    label = project_run_label(project)
    assert [log.name.split("_")[1] for log in _job_logs(project, label)] == ["0", "1"]


def test_a_sigterm_to_the_kedro_run_cancels_the_training_job_and_fails_the_run(tiny_project, tmp_path):
    project = _project(tmp_path, tiny_project, {"num_epochs": 1000, "checkpoint_every": 5})
    log = tmp_path / "run.log"
    with open(log, "w") as out:
        run = subprocess.Popen(kedro_command("run", "--pipelines", "grm_train"), cwd=project, env=kedro_env(),
                               stdout=out, stderr=subprocess.STDOUT)
    metrics = project / "data" / "06_models" / "training_state" / project_run_label(project) / "member0" / "launch" \
        / "metrics.jsonl"
    descendants: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + 300
        # Until the job's processes train (the store is read only then: the run has created it by that time).
        while not (metrics.exists() and '"loss"' in metrics.read_text()):
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-6000:]
            time.sleep(0.5)
        while not ((found := _run(project))[1] and found[0].get_metric_history(found[1].info.run_id, "loss")):
            assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-6000:]
            time.sleep(0.5)  # ... and their metrics reach the MLflow run
        # The run, then its descendants: the job's controller, tasks, launchers and training processes.
        returncode, descendants, alive = signal_and_reap(run, signal.SIGTERM)
    finally:
        kill_tree(run, descendants)
    output = log.read_text()
    assert returncode != 0 and "Cancelling Slurm job" in output, output[-6000:]
    assert len(descendants) >= 7, descendants  # controller + 2 tasks + 2 launchers + 2 training processes
    assert not alive, f"left running: {alive}"
    _, mlflow_run = _run(project)
    assert mlflow_run.info.status == "FAILED" and mlflow_run.info.end_time is not None
