"""The training job as one Slurm job of `num_machines` nodes, submitted through submitit.

The job has one task per node: `srun` starts `run_node` once on each node, and each starts PyTorch's launcher
for that node's processes (`rewardlab.slurm.node_command`), all meeting at a c10d rendezvous on the job's first
node. The job reads its inputs from, and writes its metrics and model to, the work directory that
`rewardlab.training.launch.write_job` filled, on the file system the nodes share; the submitting process (the
Kedro run) follows the metrics into its MLflow run while the job runs, as the local launcher does.

Stopping: if the submitting process is stopped (SIGTERM or Ctrl-C, turned into an exception by Kedro's
hooks), it cancels the job and waits for it to end. `scancel` has Slurm signal every process of the job.
With submitit's local executor (`cluster: local`, each task standing in for one node, on 127.0.0.1), the job
is cancelled with SIGTERM to its controller, which the tasks pass on to their launchers
(`rewardlab.slurm.cancel`).
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path
from typing import Any

from rewardlab.slurm import (ENDED_STATES, SlurmConfig, cancel, job_parameters, job_state, make_executor, node_command,
                             run_task_command)
from rewardlab.training.config import TrainConfig
from rewardlab.training.launch import child_env, follow, raise_child_failure

logger = logging.getLogger(__name__)

STOP_WAIT_SECONDS = 120


def training_job_parameters(slurm: SlurmConfig, cfg: TrainConfig, job_name: str = "rewardlab-train"
                            ) -> dict[str, Any]:
    """sbatch parameters of the training job: `num_machines` nodes, one task (launcher) and
    `processes_per_machine` GPUs per node."""
    return job_parameters(slurm, job_name=job_name, nodes=cfg.num_machines, gpus_per_node=cfg.processes_per_machine)


def run_node(work_dir: str, processes_per_node: int, rdzv_port: int, local: bool) -> int:
    """One task of the job: this node's launcher, at the rendezvous on the job's first node.

    `local`: submitit's local executor, whose tasks stand for the nodes on this one machine; it signals this
    process only, so a SIGTERM is passed on to the launcher (Slurm signals every process of the job itself).
    """
    import submitit

    environment = submitit.JobEnvironment()
    hostnames = ["127.0.0.1"] * environment.num_tasks if local else list(environment.hostnames)
    command = node_command(work_dir, gpus_per_node=processes_per_node, node=environment.global_rank,
                           hostnames=hostnames, rdzv_port=rdzv_port)
    returncode = run_task_command(command, forward_sigterm=local, env=child_env())
    if returncode != 0:
        raise RuntimeError(f"the launcher of node {environment.global_rank} exited {returncode}")
    return returncode


def submit_training_job(work_dir: Path, cfg: TrainConfig, slurm: SlurmConfig):
    """Submits the job `write_job` left in `work_dir`; returns submitit's job."""
    local = slurm.cluster == "local"
    parameters = training_job_parameters(slurm, cfg)
    executor = make_executor(slurm, Path(work_dir) / "slurm", parameters)
    port = cfg.rdzv_port
    if local:
        # One "node" per task on this machine; the port must be free here.
        executor.update_parameters(tasks_per_node=cfg.num_machines)
        port = _free_port()
    job = executor.submit(run_node, str(Path(work_dir).resolve()), cfg.processes_per_machine, port, local)
    logger.info("Training submitted as Slurm job %s (%s: %d nodes x %d processes); its output: %s", job.job_id,
                slurm.cluster, cfg.num_machines, cfg.processes_per_machine, Path(work_dir) / "slurm")
    return job


def run_slurm_job(work_dir: Path, cfg: TrainConfig, slurm: SlurmConfig | None, log_metrics=None) -> None:
    """Submits the training job, passes its metrics to `log_metrics` while it runs, and returns once it has
    completed; raises the processes' error if it failed. Stopped here, it cancels the job first."""
    if slurm is None:
        raise ValueError("launcher 'slurm' needs the Slurm settings (conf/slurm.yml)")
    job = submit_training_job(work_dir, cfg, slurm)
    follow(work_dir, lambda: not _ended(job), lambda: _cancel_and_wait(job), log_metrics)
    if not _is_local(job):
        job.watcher.update()
    state = job_state(job)
    if state != "COMPLETED":
        logger.error("Slurm job %s ended %s", job.job_id, state)
        raise_child_failure(work_dir, 1)


def _cancel_and_wait(job) -> None:
    logger.warning("Cancelling Slurm job %s", job.job_id)
    cancel(job)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    while not _ended(job) and time.monotonic() < deadline:
        time.sleep(1.0)


def _ended(job) -> bool:
    """Whether the job runs no more; for a Slurm job, submitit's `done` asks sacct at a bounded rate."""
    return job_state(job) in ENDED_STATES if _is_local(job) else job.done()


def _is_local(job) -> bool:
    from submitit.local.local import LocalJob

    return isinstance(job, LocalJob)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

