"""A `kedro run` killed with SIGKILL leaves its MLflow run RUNNING; the project's next run marks it KILLED."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from project_copy import kedro_command, kedro_env, make_project_copy

pytestmark = pytest.mark.slow

OWNER_TAGS = ("rewardlab.pid", "rewardlab.host", "rewardlab.process_start")


def _wait_for_owned_run(client, project: Path, process: subprocess.Popen, log: Path, timeout: float = 300):
    """The run's MLflow run once it is RUNNING and tagged with its process; fails when the run exits first."""
    deadline = time.monotonic() + timeout
    while True:
        if (project / "mlflow.db").exists():
            experiment = client.get_experiment_by_name("rewardlab")
            runs = client.search_runs([experiment.experiment_id]) if experiment else []
            owned = [r for r in runs if r.info.status == "RUNNING" and all(t in r.data.tags for t in OWNER_TAGS)]
            if owned:
                return owned[0]
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no tagged RUNNING run (kedro exit code {process.poll()}):\n"
                                 f"{log.read_text()[-6000:]}")
        time.sleep(0.2)


def test_a_run_killed_with_sigkill_is_marked_killed_by_the_next_run(tmp_path):
    from mlflow.tracking import MlflowClient

    project = make_project_copy(tmp_path / "p")
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    log = tmp_path / "killed.log"
    with open(log, "w") as out:
        # Pretraining far longer than the test waits: the run is still going when it is killed.
        killed = subprocess.Popen(
            kedro_command("run", "--pipeline", "world", "--params", "world.pretrain_steps=1000000"),
            cwd=project, env=kedro_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        run = _wait_for_owned_run(client, project, killed, log)
        assert run.data.tags["rewardlab.pid"] == str(killed.pid)
        os.killpg(killed.pid, signal.SIGKILL)  # kedro and anything it started: nothing gets to clean up
        killed.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(killed.pid, signal.SIGKILL)
        killed.wait(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert client.get_run(run.info.run_id).info.status == "RUNNING"  # what SIGKILL leaves behind

    # The next run, one short node: the hooks run before it, whatever the pipeline.
    environ = kedro_env() | {"COLUMNS": "400"}  # one log record per line, however long
    done = subprocess.run(kedro_command("run", "--pipeline", "world", "--nodes", "build_corpus"), cwd=project,
                          env=environ, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-6000:]
    assert client.get_run(run.info.run_id).info.status == "KILLED", output[-6000:]
    host = run.data.tags["rewardlab.host"]
    expected = (f"Marked MLflow run {run.info.run_id} ({run.info.run_name}) KILLED: its process {killed.pid} on "
                f"host {host} is gone")
    assert expected in " ".join(output.split()), output[-6000:]
    # The next run itself ends as usual, and carries its own process's tags.
    experiment = client.get_experiment_by_name("rewardlab")
    (latest,) = [r for r in client.search_runs([experiment.experiment_id]) if r.info.run_id != run.info.run_id]
    assert latest.info.status == "FINISHED"
    assert latest.data.tags["rewardlab.host"] == host and latest.data.tags["rewardlab.pid"] != str(killed.pid)
