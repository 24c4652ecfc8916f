"""Grid points as Slurm jobs, through submitit.

Each grid point is one job whose single task runs the point's `kedro run` in the project directory, so each
point is its own MLflow run in the project's store. The job's settings come from `conf/slurm.yml`
(`SlurmConfig`); `cluster: local` runs the same jobs as local processes with submitit's local executor, which
is how the tests drive this path without a cluster.

Stopping: `scancel` makes Slurm send SIGTERM to every process of the job, the `kedro run` included, which then
ends its MLflow run FAILED (rewardlab.hooks.SignalHooks). submitit's local executor cancels with SIGINT to its
controller, which kills its tasks one second later: too soon for a run to close. Local jobs are therefore
stopped with SIGTERM to the controller, which forwards it to its task, which forwards it to the `kedro run`.
They also start with SIGINT ignored, so a Ctrl-C in the grid's terminal reaches the grid alone, and the grid
stops them the same way.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal

import yaml

from rewardlab.errors import ExpectedError
from rewardlab.typed_config import TypedConfig, setting

# Slurm job states after which a job runs no more (sacct's spelling; "CANCELLED by <uid>" reads as CANCELLED).
# PREEMPTED is not among them: a preempted job may be requeued.
ENDED_STATES = frozenset({"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL",
                          "BOOT_FAIL", "DEADLINE", "REVOKED"})
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class SlurmConfig(TypedConfig):
    cluster: Literal["slurm", "local"] = setting(
        "slurm", "slurm: submit with sbatch; local: run the same jobs on this machine (submitit's local "
                 "executor, for tests)")
    partition: str | None = setting(None, "Slurm partition (--partition); none: the cluster's default")
    gpus_per_node: int = setting(1, "GPUs per job (--gpus-per-node)", ge=0)
    cpus_per_task: int = setting(8, "CPUs per job (--cpus-per-task)", ge=1)
    mem_gb: int | None = setting(64, "memory per node in GB (--mem); none: the partition's default", ge=1)
    time_min: int = setting(240, "time limit in minutes (--time)", ge=1)
    sbatch_options: dict[str, str | int | bool] = setting(
        dict, "further sbatch options by long name, e.g. {account: myproject, qos: high, constraint: h100}")
    setup: list[str] = setting(list, "shell lines the job runs before its task, e.g. `module load cuda` "
                                     "(Slurm only)")
    log_dir: str = setting("logs/slurm", "submitit's folder (each job's script, state and output), relative "
                                         "to the project; on a file system all nodes share")
    poll_seconds: float = setting(30.0, "how often the grid asks Slurm for its jobs' states", gt=0)
    signal_delay_s: int = setting(120, "seconds before the time limit at which submitit's job gets its "
                                       "warning signal (USR2)", ge=0)


def load_slurm_config(path: Path) -> SlurmConfig:
    """`conf/slurm.yml`, read as plain YAML (it belongs to no Kedro environment) and checked."""
    if not path.exists():
        raise ExpectedError(f"{path} not found: `kedro grid --executor slurm` reads the job settings from it")
    return SlurmConfig.from_dict(yaml.safe_load(path.read_text()) or {}, path="slurm")


def job_parameters(config: SlurmConfig, *, job_name: str, nodes: int = 1, gpus_per_node: int | None = None
                   ) -> dict[str, Any]:
    """SlurmExecutor parameters (sbatch's names) of a job with one task per node."""
    parameters: dict[str, Any] = {
        "job_name": job_name, "nodes": nodes, "ntasks_per_node": 1,
        "gpus_per_node": config.gpus_per_node if gpus_per_node is None else gpus_per_node,
        "cpus_per_task": config.cpus_per_task, "time": config.time_min,
        "signal_delay_s": config.signal_delay_s, "stderr_to_stdout": True,
    }
    if config.setup:
        parameters["setup"] = list(config.setup)
    if config.sbatch_options:
        parameters["additional_parameters"] = dict(config.sbatch_options)
    if config.partition:
        parameters["partition"] = config.partition
    if config.mem_gb:
        parameters["mem"] = f"{config.mem_gb}GB"
    return parameters


def make_executor(config: SlurmConfig, folder: Path, parameters: dict[str, Any]):
    """The submitit executor of `config.cluster` with the job's `parameters`."""
    import submitit

    if config.cluster == "local":
        executor = submitit.LocalExecutor(folder=str(folder))
        # `setup` would run the controller under a shell, which does not pass SIGTERM on: left out.
        executor.update_parameters(timeout_min=parameters["time"], tasks_per_node=1,
                                   gpus_per_node=parameters["gpus_per_node"], stderr_to_stdout=True,
                                   signal_delay_s=parameters["signal_delay_s"])
        return executor
    executor = submitit.SlurmExecutor(folder=str(folder))
    executor.update_parameters(**parameters)
    return executor


def sbatch_script(parameters: dict[str, Any], folder: Path) -> str:
    """The sbatch script submitit writes for a job with these parameters; needs no cluster."""
    import submitit

    class ScriptOnlyExecutor(submitit.SlurmExecutor):
        @classmethod
        def affinity(cls) -> int:  # submitit refuses to start without `srun`, which only submitting needs
            return 2

    executor = ScriptOnlyExecutor(folder=str(folder))
    executor.update_parameters(**parameters)
    return executor._make_submission_file_text(executor._submitit_command_str, uid="script")


class PointFailed(RuntimeError):
    """A grid point's `kedro run` exited with an error (the job then ends FAILED)."""


def run_task_command(command: list[str], *, forward_sigterm: bool, **popen_args: Any) -> int:
    """What a job's task does: run `command` to its end; returns its exit code.

    `forward_sigterm`: pass a SIGTERM on to it (submitit's local executor signals the task's process only;
    Slurm signals every process of the job, and submitit has the task itself ignore it).
    """
    process = subprocess.Popen(command, **popen_args)
    if forward_sigterm:
        signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    return process.wait()


def run_point(command: list[str], cwd: str, forward_sigterm: bool) -> int:
    """A grid point's job: its `kedro run` in the project directory."""
    returncode = run_task_command(command, forward_sigterm=forward_sigterm, cwd=cwd,
                                  env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "true"})
    if returncode != 0:
        raise PointFailed(f"`{' '.join(command[1:])}` exited {returncode}")
    return returncode


def node_command(work_dir: str, *, gpus_per_node: int, node: int, hostnames: list[str], rdzv_port: int
                 ) -> list[str]:
    """The training launcher one node of a multi-node job runs: node 0 hosts the rendezvous."""
    from rewardlab.training.launch import node_launch_command

    return node_launch_command(work_dir, num_processes=gpus_per_node, num_machines=len(hostnames),
                               machine_rank=node, rdzv_host=hostnames[0], rdzv_port=rdzv_port)


@dataclass
class GridJob:
    """One grid point on its way through the queue."""

    label: str
    command: list[str]
    job: Any = None
    state: str = "WAITING"
    cancelled: bool = False


class GridStopped(Exception):
    """The grid received SIGTERM or SIGINT and cancelled its jobs."""

    def __init__(self, signal_name: str, cancelled: list[str]):
        super().__init__(signal_name)
        self.signal_name, self.cancelled = signal_name, cancelled


def _is_local(job) -> bool:
    from submitit.local.local import LocalJob

    return isinstance(job, LocalJob)


def job_state(job) -> str:
    """PENDING, RUNNING, COMPLETED, FAILED, CANCELLED, ... as Slurm names them, for Slurm and local jobs."""
    if not _is_local(job):
        return (job.watcher.get_state(job.job_id, mode="cache").split() or ["UNKNOWN"])[0]
    state = job.state  # the local executor knows RUNNING, FINISHED and INTERRUPTED only
    if state == "RUNNING":
        return "RUNNING"
    if state == "INTERRUPTED":
        return "CANCELLED"
    try:
        return "COMPLETED" if job.exception() is None else "FAILED"
    except Exception:  # no result written: the job died before its task ended
        return "FAILED"


def cancel(job) -> None:
    """Stops a job so that its `kedro run` gets SIGTERM (see the module's docstring)."""
    if _is_local(job):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(job.job_id), signal.SIGTERM)  # the controller's process id
    else:
        job.cancel(check=False)


def submit(executor, point: GridJob, cwd: Path):
    """Submits `point` as one job; a local job starts with SIGINT ignored, so Ctrl-C reaches the grid only."""
    forward = _is_local_executor(executor)
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN) if forward else None
    try:
        return executor.submit(run_point, point.command, str(cwd), forward)
    finally:
        if forward:
            signal.signal(signal.SIGINT, previous)


def _is_local_executor(executor) -> bool:
    from submitit import LocalExecutor

    return isinstance(executor, LocalExecutor)


def _refresh(jobs: list) -> None:
    """One `sacct` call for all Slurm jobs (submitit's own schedule backs off to minutes)."""
    slurm_jobs = [job for job in jobs if not _is_local(job)]
    if slurm_jobs:
        slurm_jobs[0].watcher.update()


def run_grid_jobs(points: list[GridJob], executor, cwd: Path, *, max_parallel: int, poll_seconds: float,
                  echo: Callable[[str], None], stop_wait_s: float = 300) -> list[GridJob]:
    """Runs `points` as jobs, at most `max_parallel` at once, in order; echoes each job's state as it changes.

    A SIGTERM or SIGINT cancels the jobs queued or running, waits up to `stop_wait_s` for them to end (their
    runs close as FAILED) and raises GridStopped. Returns the points with their final states.
    """
    received: list[str] = []
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signal.Signals(signum).name))
                for signum in STOP_SIGNALS}
    waiting, active = list(points), []
    try:
        while (waiting or active) and not received:
            while waiting and len(active) < max_parallel and not received:
                point = waiting.pop(0)
                point.job = submit(executor, point, cwd)
                active.append(point)
                echo(f"{point.label}: submitted as job {point.job.job_id}")
            active = _update(active, echo)
            _sleep(poll_seconds if active else 0, received)
        if received:
            for point in active:
                point.cancelled = True
                cancel(point.job)
            deadline = time.monotonic() + stop_wait_s
            while active and time.monotonic() < deadline:
                _sleep(min(poll_seconds, 2.0), [])
                active = _update(active, echo)
            raise GridStopped(received[0], [point.label for point in points if point.cancelled])
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return points


def _update(active: list[GridJob], echo: Callable[[str], None]) -> list[GridJob]:
    """Reads the states of `active`, echoes the changes; returns the points still queued or running."""
    _refresh([point.job for point in active])
    for point in active:
        state = job_state(point.job)
        if point.cancelled and state == "FAILED":  # a local job's run exits with an error when stopped
            state = "CANCELLED"
        if state != point.state:
            point.state = state
            echo(f"{point.label}: {state} (job {point.job.job_id})")
    return [point for point in active if point.state not in ENDED_STATES]


def _sleep(seconds: float, received: list[str]) -> None:
    """Sleeps up to `seconds`, waking early once a stop signal arrived."""
    deadline = time.monotonic() + seconds
    while not received and time.monotonic() < deadline:
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
