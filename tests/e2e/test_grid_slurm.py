"""`kedro grid --executor slurm` with submitit's local executor (`--slurm-local`): grid points run as
concurrent jobs, each its own `kedro run` and MLflow run; a SIGTERM to the grid cancels its jobs, whose runs
end FAILED."""

from __future__ import annotations

import copy
import shutil
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
from project_copy import (PROJECT_ROOT, TINY_PARAMETERS, kedro, kedro_command, kedro_env, kill_tree,
                          make_project_copy, project_run_label, signal_and_reap)

pytestmark = pytest.mark.slow

GRID = ["grid", "--executor", "slurm", "--slurm-local", "--variants", "bt", "--noise", "0", "--seeds", "0,1",
        "--pipelines", "grm_train", "--max-parallel", "2"]


def _labels(project: Path, train: dict | None = None) -> list[str]:
    return [project_run_label(project, {"grm_train": {"variant": "bt", "noise_rate": 0, "seed": seed,
                                                      "train": train or {}}}) for seed in (0, 1)]


def _runs_by_label(project: Path) -> dict:
    from mlflow.tracking import MlflowClient

    if not (project / "mlflow.db").exists():
        return {}
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rewardlab")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    return {run.data.tags.get("run_label"): run for run in runs}


def test_grid_points_run_as_concurrent_jobs_each_its_own_finished_mlflow_run(tiny_project, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(tiny_project, project)
    shutil.copy(PROJECT_ROOT / "conf" / "slurm.yml", project / "conf" / "slurm.yml")
    # Short runs: a few steps, no model copies logged or exported (neither changes a run's label).
    params = "grm_train.train.max_steps=4,grm_train.export=false,grm_train.log_checkpoint_artifact=false"
    output = kedro(project, *GRID, "--params", params).stdout
    labels = _labels(project, {"max_steps": 4})
    for label in labels:
        assert f"{label}: RUNNING" in output and f"{label}: COMPLETED" in output, output
    runs = [_runs_by_label(project)[label].info for label in labels]
    assert [run.status for run in runs] == ["FINISHED", "FINISHED"], output
    assert runs[0].run_id != runs[1].run_id
    # The two runs overlapped in time: the jobs ran at once.
    assert runs[0].start_time < runs[1].end_time and runs[1].start_time < runs[0].end_time, output


def test_a_sigterm_to_the_grid_cancels_its_jobs_whose_runs_end_failed(tiny_project, tmp_path):
    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters["grm_train"]["train"].update(num_epochs=1000, checkpoint_every=5)  # runs far longer than the test
    project = make_project_copy(tmp_path / "p", parameters)
    for inputs in ("03_primary", "06_models/base_model"):  # grm_train's inputs, made by the tiny project's run
        shutil.copytree(tiny_project / "data" / inputs, project / "data" / inputs)
    shutil.copy(PROJECT_ROOT / "conf" / "slurm.yml", project / "conf" / "slurm.yml")
    labels = _labels(project)
    log = tmp_path / "grid.log"
    with open(log, "w") as out:
        grid = subprocess.Popen(kedro_command(*GRID), cwd=project, env=kedro_env(), stdout=out,
                                stderr=subprocess.STDOUT)
    descendants: list[psutil.Process] = []
    try:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
        deadline = time.monotonic() + 300
        while not all(label in (runs := _runs_by_label(project)) and
                      client.get_metric_history(runs[label].info.run_id, "loss") for label in labels):
            assert grid.poll() is None and time.monotonic() < deadline, log.read_text()[-6000:]
            time.sleep(0.5)
        # The grid, then its descendants: the jobs' controllers, their tasks and the tasks' `kedro run`s.
        returncode, descendants, alive = signal_and_reap(grid, signal.SIGTERM)
    finally:
        kill_tree(grid, descendants)
    output = log.read_text()
    assert returncode != 0 and f"grid stopped by SIGTERM: cancelled {labels[0]}, {labels[1]}" in output, output
    assert all(f"{label}: CANCELLED" in output for label in labels), output
    assert not alive, f"left running: {alive}"
    runs = _runs_by_label(project)
    assert [runs[label].info.status for label in labels] == ["FAILED", "FAILED"], output
    assert all(runs[label].info.end_time is not None for label in labels)
    job_logs = [path.read_text() for path in (project / "logs" / "slurm").rglob("*_log.out")]
    assert sum("RunTerminated: received SIGTERM" in text for text in job_logs) == 2, job_logs
