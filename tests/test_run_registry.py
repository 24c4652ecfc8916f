"""run_registry against a real sqlite MLflow store: RUNNING runs whose owner process has ended become KILLED,
every other run stays as it is; and the hook that applies it runs where kedro-mlflow has opened the run."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from rewardlab import run_registry
from rewardlab.run_registry import ProcessIdentity, current_process


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}")


@pytest.fixture
def experiment(client, tmp_path) -> str:
    """A fresh experiment per test: a test sees only its own runs (and finds the others' already settled)."""
    return client.create_experiment(f"e-{uuid.uuid4().hex[:8]}", artifact_location=str(tmp_path / "artifacts"))


def _run(client, experiment: str, name: str, owner: ProcessIdentity | None = None) -> str:
    run = client.create_run(experiment, run_name=name)  # RUNNING, as kedro-mlflow leaves a run it opened
    if owner is not None:
        run_registry.tag_run(client, run.info.run_id, owner)
    return run.info.run_id


def _status(client, run_id: str) -> str:
    return client.get_run(run_id).info.status


def _ended_pid() -> int:
    """The pid of a process that has ended and been reaped."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=60)
    return process.pid


def _same_host(pid: int, **changes) -> ProcessIdentity:
    me = current_process()
    return ProcessIdentity(pid, me.host, changes.get("boot_id", me.boot_id), changes.get("start", me.start))


def test_this_process_is_identified_by_pid_host_boot_and_start_time():
    me = current_process()
    assert me.pid == os.getpid() and me.host
    if sys.platform.startswith("linux"):
        assert me.boot_id and me.start and me.start.isdigit()
    assert ProcessIdentity.from_tags(me.tags()) == me
    assert ProcessIdentity.from_tags({}) is None
    assert ProcessIdentity.from_tags({run_registry.PID_TAG: "0", run_registry.HOST_TAG: me.host}) is None
    assert ProcessIdentity.from_tags({run_registry.PID_TAG: "-1", run_registry.HOST_TAG: me.host}) is None


def test_runs_of_ended_processes_become_killed_and_the_others_stay(client, experiment, caplog):
    me = current_process()
    dead_pid = _ended_pid()
    dead = _run(client, experiment, "dead", _same_host(dead_pid))
    alive = _run(client, experiment, "alive", me)
    alive_without_start_time = _run(client, experiment, "alive-pid-only", _same_host(os.getpid(), start=None))
    untagged = _run(client, experiment, "untagged")
    elsewhere = _run(client, experiment, "elsewhere", ProcessIdentity(dead_pid, "another-host", "b", "1"))
    finished = _run(client, experiment, "finished", _same_host(dead_pid))
    client.set_terminated(finished, "FINISHED")

    with caplog.at_level(logging.WARNING, logger="rewardlab.run_registry"):
        marked = run_registry.mark_dead_runs_killed(client)

    assert [run.run_id for run in marked] == [dead]
    assert _status(client, dead) == "KILLED"
    assert client.get_run(dead).info.end_time is not None
    for run_id in (alive, alive_without_start_time, untagged, elsewhere):
        assert _status(client, run_id) == "RUNNING"
    assert _status(client, finished) == "FINISHED"
    assert f"Marked MLflow run {dead} (dead) KILLED: its process {dead_pid} on host {me.host} is gone" in caplog.text
    assert run_registry.mark_dead_runs_killed(client) == []  # nothing left to mark


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="start times come from /proc")
def test_a_reused_pid_is_not_taken_for_the_owner(client, experiment, caplog):
    """The pid is alive, but the process behind it started at another time: the owner is gone."""
    me = current_process()
    reused = _run(client, experiment, "reused", _same_host(os.getpid(), start=str(int(me.start) - 1)))
    with caplog.at_level(logging.WARNING, logger="rewardlab.run_registry"):
        run_registry.mark_dead_runs_killed(client)
    assert _status(client, reused) == "KILLED"
    assert "now belongs to another process" in caplog.text


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="boot ids come from /proc")
def test_a_run_from_before_a_restart_is_killed_even_if_its_pid_is_alive(client, experiment):
    before_restart = _run(client, experiment, "before-restart", _same_host(os.getpid(), boot_id="an-earlier-boot"))
    run_registry.mark_dead_runs_killed(client)
    assert _status(client, before_restart) == "KILLED"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="zombies are seen in /proc")
def test_a_killed_process_not_yet_reaped_is_gone(client, experiment):
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        start = run_registry._read_stat(process.pid)[1]
        owned = _run(client, experiment, "zombie", _same_host(process.pid, start=start))
        assert run_registry.find_dead_runs(client) == []
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 30  # the zombie stays until wait(): its state turns Z
        while run_registry._read_stat(process.pid)[0] != "Z" and time.monotonic() < deadline:
            time.sleep(0.05)
        run_registry.mark_dead_runs_killed(client)
        assert _status(client, owned) == "KILLED"
    finally:
        process.kill()
        process.wait(timeout=30)


def test_runs_are_found_in_every_experiment_of_the_store(client, experiment, tmp_path):
    other = client.create_experiment(f"o-{uuid.uuid4().hex[:8]}", artifact_location=str(tmp_path / "other"))
    pid = _ended_pid()
    runs = [_run(client, experiment, "a", _same_host(pid)), _run(client, other, "b", _same_host(pid))]
    assert {run.run_id for run in run_registry.mark_dead_runs_killed(client)} == set(runs)


# ---- the hook -------------------------------------------------------------------------------------------------


def test_the_hook_runs_after_kedro_mlflow_opens_the_run_and_before_signal_hooks():
    """pluggy calls plain hooks before `trylast` ones, and of the `trylast` ones the last registered last."""
    from kedro.framework.hooks.manager import _create_hook_manager, _register_hooks
    from kedro_mlflow.framework.hooks.mlflow_hook import MlflowHook

    from rewardlab.hooks import MlflowRunOwnerHooks, SignalHooks
    from rewardlab.settings import HOOKS

    manager = _create_hook_manager()
    _register_hooks(manager, HOOKS)
    _register_hooks(manager, [MlflowHook()])  # as Kedro does: project hooks first, then the plugins'

    def call_order(hook_name: str) -> list[type]:
        return [type(impl.plugin) for impl in reversed(getattr(manager.hook, hook_name).get_hookimpls())]

    before = call_order("before_pipeline_run")
    assert before.index(MlflowHook) < before.index(MlflowRunOwnerHooks) < before.index(SignalHooks)
    assert before[-1] is SignalHooks
    created = call_order("after_context_created")
    assert created.index(MlflowHook) < created.index(MlflowRunOwnerHooks)
