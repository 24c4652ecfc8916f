"""How a training run is started: in this process, on N local processes, or across several machines.

`run_training` is the one entry point (the grm_train node calls it). With one process in all, or inside an
already launched process group, it calls `train_reward_model` directly. Otherwise `launch_training` writes
the run's inputs to a work directory (`write_job`) and starts PyTorch's launcher (torchrun) with the
command from `node_launch_command`, which runs `python -m rewardlab.training.launch WORK_DIR` in every
process. The processes meet through a c10d rendezvous (gloo on CPU, NCCL on GPUs). Process 0 forwards
per-step metrics through a JSON-lines file, which the caller's `log_metrics` receives while the run goes
on, and saves the final model to `WORK_DIR/output`. The environment (MLFLOW_RUN_ID, HF_HOME, ...) is
passed through unchanged.

Across machines (`num_machines` > 1), the work directory is `state_dir/launch` on a file system all of them
share; this machine is machine 0 and the others join with `rewardlab train-node WORK_DIR --machine-rank K`
(`machine_command`), meeting at `rdzv_host:rdzv_port`. With `launcher: slurm` one Slurm job of
`num_machines` nodes runs them all (`rewardlab.training.slurm_job`). `TrainConfig.num_processes` counts the
processes of all machines together.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import click
import pandas as pd

from rewardlab.modeling import RewardModel
from rewardlab.training.config import TrainConfig
from rewardlab.training.loop import TrainingDivergedError, train_reward_model

logger = logging.getLogger(__name__)

JOB_FILE = "job.json"
METRICS_FILE = "metrics.jsonl"
HISTORY_FILE = "history.json"
OUTPUT_DIR = "output"
POLL_SECONDS = 0.5
STOP_GRACE_SECONDS = 60


def node_launch_command(work_dir: str | os.PathLike, *, num_processes: int, num_machines: int = 1,
                        machine_rank: int = 0, rdzv_host: str = "127.0.0.1", rdzv_port: int = 0) -> list[str]:
    """The command one machine runs to start its `num_processes` training processes of the job in `work_dir`.

    `num_machines` machines meet at the c10d rendezvous `rdzv_host:rdzv_port`; machine 0 hosts it (the
    others only connect), so a port chosen on machine 0 is enough. Port 0 (one machine only) lets the
    operating system pick a free port. Global ranks are assigned by the rendezvous, so process 0 (which
    writes the results) may run on any machine.
    """
    if num_machines < 1 or not 0 <= machine_rank < num_machines:
        raise ValueError(f"machine_rank {machine_rank} is not in 0..{num_machines - 1}")
    if num_machines > 1 and not rdzv_port:
        raise ValueError("a run across machines needs a fixed rendezvous port")
    host_side = "true" if machine_rank == 0 else "false"
    return [
        sys.executable, "-m", "torch.distributed.run",
        "--nnodes", str(int(num_machines)), "--nproc-per-node", str(int(num_processes)),
        "--node-rank", str(int(machine_rank)),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{rdzv_host}:{int(rdzv_port)}",
        "--rdzv-conf", f"is_host={host_side}", "--max-restarts", "0",
        "-m", "rewardlab.training.launch", str(work_dir),
    ]


def child_env() -> dict[str, str]:
    """The environment of launched processes: this one, plus the source root on PYTHONPATH."""
    env = dict(os.environ)
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    # The children import this very package, whether or not it is installed.
    source_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (source_root, env.get("PYTHONPATH", "")) if p)
    return env


def write_job(work_dir: Path, base_model, train_pairs: pd.DataFrame, eval_pairs: pd.DataFrame | None,
              cfg: TrainConfig, state_dir, tokenizer=None) -> Path:
    """Write everything the launched processes read, and clear results of an earlier run; returns the job file."""
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    for stale in [*work_dir.glob("error-rank*.json"), work_dir / METRICS_FILE, work_dir / HISTORY_FILE]:
        stale.unlink(missing_ok=True)
    shutil.rmtree(work_dir / OUTPUT_DIR, ignore_errors=True)
    # Pickle keeps conversational rows (lists of message dicts) and NaN margins exactly as they are.
    train_pairs.to_pickle(work_dir / "train_pairs.pkl")
    if eval_pairs is not None:
        eval_pairs.to_pickle(work_dir / "eval_pairs.pkl")
    if isinstance(base_model, RewardModel):
        base_model.save_pretrained(work_dir / "base_model", tokenizer=tokenizer)
        base, kind = str(work_dir / "base_model"), "reward_model"
    else:
        base = str(Path(base_model).resolve()) if Path(str(base_model)).exists() else str(base_model)
        kind = "causal_lm"
    tokenizer_dir = None
    if tokenizer is not None:
        tokenizer.save_pretrained(str(work_dir / "tokenizer"))
        tokenizer_dir = str(work_dir / "tokenizer")
    job = {
        "base_model": base, "base_kind": kind, "tokenizer": tokenizer_dir, "config": cfg.to_dict(),
        "state_dir": str(Path(state_dir).resolve()), "has_eval": eval_pairs is not None,
    }
    path = work_dir / JOB_FILE
    path.write_text(json.dumps(job, indent=1))
    return path


class _MetricsTail:
    """Reads complete JSON lines appended to the metrics file since the last call."""

    def __init__(self, path: Path):
        self.path, self.offset = path, 0

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with open(self.path, "rb") as f:
            f.seek(self.offset)
            data = f.read()
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [json.loads(line) for line in data[:end].decode("utf-8").splitlines() if line.strip()]


def raise_child_failure(work_dir: Path, returncode: int) -> None:
    reports = sorted(Path(work_dir).glob("error-rank*.json"))
    if reports:
        report = json.loads(reports[0].read_text())
        if report["type"] == "TrainingDivergedError":
            raise TrainingDivergedError(report["message"], report.get("step", -1), report.get("components", {}))
        raise RuntimeError(f"distributed training failed (exit code {returncode}) in process "
                           f"{report['rank']}: {report['type']}: {report['message']}\n{report['traceback']}")
    raise RuntimeError(f"distributed training failed (exit code {returncode}) without an error report; "
                       "see the subprocess output above")


def read_result(work_dir: Path) -> tuple[RewardModel, list[dict[str, Any]]]:
    """The model and history process 0 left in `work_dir` after a successful run."""
    work_dir = Path(work_dir)
    return RewardModel.from_pretrained(work_dir / OUTPUT_DIR), json.loads((work_dir / HISTORY_FILE).read_text())


def _stop(process: subprocess.Popen) -> None:
    """End the launcher and its workers: SIGTERM lets torchrun stop the workers it started (a SIGKILL
    would orphan them); SIGKILL only if that does not finish in time."""
    process.terminate()
    try:
        process.wait(timeout=STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def follow(work_dir: Path, running, stop, log_metrics=None) -> None:
    """Pass the metrics process 0 appends in `work_dir` to `log_metrics` while `running()` is true, once more
    after it ends; on any exception here (a SIGTERM or Ctrl-C turned into one by Kedro's hooks), `stop()`."""
    tail = _MetricsTail(Path(work_dir) / METRICS_FILE)
    try:
        while True:
            finished = not running()
            for record in tail.read():
                if log_metrics is not None:
                    log_metrics(record["metrics"], record["step"])
            if finished:
                return
            time.sleep(POLL_SECONDS)
    except BaseException:
        stop()
        raise


def launch_training(base_model, train_pairs: pd.DataFrame, eval_pairs: pd.DataFrame | None,
                    cfg: TrainConfig | dict, state_dir, tokenizer=None, log_metrics=None,
                    work_dir=None, slurm=None) -> tuple[RewardModel, list[dict[str, Any]]]:
    """Train on `cfg.num_processes` launched processes; same arguments and result as `train_reward_model`.

    `work_dir` receives the inputs, the metrics stream, the processes' error reports and the final model
    (`work_dir/output`). On one machine it defaults to a temporary directory, removed afterwards; across
    machines (or with the Slurm launcher, whose settings `slurm`, a `rewardlab.slurm.SlurmConfig`, gives) all
    machines read it, so it defaults to `state_dir/launch`, on the file system they share, and is kept.
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    shared = cfg.num_machines > 1 or cfg.launcher == "slurm"
    temporary = work_dir is None and not shared
    work = Path(tempfile.mkdtemp(prefix="rewardlab-launch-")) if temporary \
        else Path(work_dir or Path(state_dir) / "launch")
    try:
        write_job(work, base_model, train_pairs, eval_pairs, cfg, state_dir, tokenizer)
        if cfg.launcher == "slurm":
            from rewardlab.training.slurm_job import run_slurm_job

            run_slurm_job(work, cfg, slurm, log_metrics)
            return read_result(work)
        port = cfg.rdzv_port if cfg.num_machines > 1 else 0
        command = node_launch_command(work, num_processes=cfg.processes_per_machine, num_machines=cfg.num_machines,
                                      machine_rank=0, rdzv_host=cfg.rdzv_host, rdzv_port=port)
        if cfg.num_machines > 1:
            logger.info("Machine 0 of %d starts its %d processes; on machine k (1..%d) run: "
                        "python -m rewardlab train-node %s --machine-rank k", cfg.num_machines,
                        cfg.processes_per_machine, cfg.num_machines - 1, work.resolve())
        logger.info("Launching %d training processes: %s", cfg.processes_per_machine, " ".join(command))
        process = subprocess.Popen(command, env=child_env())
        follow(work, lambda: process.poll() is None, lambda: _stop(process), log_metrics)
        if process.returncode != 0:
            raise_child_failure(work, process.returncode)
        return read_result(work)
    finally:
        if temporary:
            shutil.rmtree(work, ignore_errors=True)


def machine_command(work_dir: str | os.PathLike, machine_rank: int) -> list[str]:
    """The launcher command of machine `machine_rank` for the job `write_job` left in `work_dir` (its
    configuration says how many machines and processes, and where they meet)."""
    cfg = TrainConfig.from_dict(json.loads((Path(work_dir) / JOB_FILE).read_text())["config"])
    if not 0 < machine_rank < cfg.num_machines:
        raise ValueError(f"the job in {work_dir} runs on {cfg.num_machines} machine(s): machine rank {machine_rank} "
                         f"is not one of those that join it (1..{cfg.num_machines - 1})")
    return node_launch_command(Path(work_dir).resolve(), num_processes=cfg.processes_per_machine,
                               num_machines=cfg.num_machines, machine_rank=machine_rank,
                               rdzv_host=cfg.rdzv_host, rdzv_port=cfg.rdzv_port)


@click.command("train-node")
@click.argument("work_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--machine-rank", type=click.IntRange(min=1), required=True,
              help="this machine's rank, 1..num_machines-1 (machine 0 is the one whose Kedro run wrote WORK_DIR)")
def train_node_command(work_dir: Path, machine_rank: int) -> None:
    """Join a reward-model training across machines: start this machine's share of its processes.

    WORK_DIR is the `launch` folder the Kedro run on machine 0 names in its log (`state_dir/.../launch`), on a
    file system both machines share."""
    try:
        command = machine_command(work_dir, machine_rank)
    except ValueError as error:
        raise click.ClickException(str(error)) from error
    process = subprocess.Popen(command, env=child_env())
    signal.signal(signal.SIGTERM, lambda signum, frame: process.send_signal(signum))
    sys.exit(process.wait())


def run_training(base_model, tokenizer, train_pairs: pd.DataFrame, eval_pairs: pd.DataFrame | None,
                 cfg: TrainConfig | dict, state_dir, log_metrics=None, slurm=None
                 ) -> tuple[RewardModel, list[dict[str, Any]]]:
    """Train a reward model wherever `cfg` says: this process, launched processes on this machine and others,
    or a Slurm job (`slurm`: its `rewardlab.slurm.SlurmConfig`).

    Same arguments and result as `train_reward_model`; inside an already launched process group (a manual
    torchrun) it trains in that group."""
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    launched = cfg.num_processes > 1 or cfg.launcher == "slurm"
    if launched and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        return launch_training(base_model, train_pairs, eval_pairs, cfg, state_dir, tokenizer=tokenizer,
                               log_metrics=log_metrics, slurm=slurm)
    return train_reward_model(base_model, tokenizer, train_pairs, eval_pairs, cfg, state_dir, log_metrics)


def _run_job(work_dir: Path) -> None:
    """What each launched process runs."""
    from transformers import AutoTokenizer

    job = json.loads((work_dir / JOB_FILE).read_text())
    rank = int(os.environ.get("RANK", "0"))
    try:
        tokenizer = AutoTokenizer.from_pretrained(job["tokenizer"] or job["base_model"])
        base = RewardModel.from_pretrained(job["base_model"]) if job["base_kind"] == "reward_model" \
            else job["base_model"]
        train_pairs = pd.read_pickle(work_dir / "train_pairs.pkl")
        eval_pairs = pd.read_pickle(work_dir / "eval_pairs.pkl") if job["has_eval"] else None
        cfg = TrainConfig.from_dict(job["config"])
        metrics_file = work_dir / METRICS_FILE

        def log_metrics(metrics: dict[str, float], step: int) -> None:
            with open(metrics_file, "a") as f:
                f.write(json.dumps({"step": step, "metrics": metrics}) + "\n")

        model, history = train_reward_model(base, tokenizer, train_pairs, eval_pairs, cfg, job["state_dir"],
                                            log_metrics=log_metrics)
        if rank == 0:
            model.save_pretrained(work_dir / OUTPUT_DIR, tokenizer=tokenizer)
            (work_dir / HISTORY_FILE).write_text(json.dumps(history))
    except BaseException as error:
        report = {"rank": rank, "type": type(error).__name__, "message": str(error),
                  "traceback": traceback.format_exc()}
        if isinstance(error, TrainingDivergedError):
            report.update(step=error.step, components=error.components)
        (work_dir / f"error-rank{rank}.json").write_text(json.dumps(report, default=str))
        raise


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run one process of a multi-process reward-model training.")
    parser.add_argument("work_dir", type=Path, help="directory written by write_job")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _run_job(args.work_dir)


if __name__ == "__main__":
    main()
