"""Throw-away copies of the project (configuration and metadata; the package is installed) and its CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# Every size shrunk so the whole default DAG runs in about a minute on 2 cores.
TINY_PARAMETERS = {
    "world": {
        "n_train_pairs": 240, "n_test_pairs": 40, "n_eval_prompts": 4, "vocab_size": 400, "hidden_size": 32,
        "num_layers": 2, "num_heads": 2, "intermediate_size": 64, "pretrain_steps": 30, "batch_size": 16,
        "block_size": 64, "max_length": 128, "progress": False,
    },
    "ingest": {"validation_size": 40},
    "grm_train": {
        "train": {"per_device_batch_size": 8, "eval_every": 10, "checkpoint_every": 10, "max_length": 96,
                  "progress": False},
    },
    "ood_eval": {"batch_size": 32, "max_length": 96, "bootstrap_samples": 100},
    "bon": {"num_prompts": 4, "num_samples": 8, "max_new_tokens": 12, "batch_size": 32, "max_length": 96},
}


def make_project_copy(target: Path, parameters: dict | None = None) -> Path:
    """The project's configuration and metadata in `target` (the package itself is installed)."""
    target.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry", "README.md"):
        shutil.copy(PROJECT_ROOT / name, target / name)
    (target / "src").mkdir(exist_ok=True)  # Kedro wants it; the package itself is installed
    shutil.copytree(PROJECT_ROOT / "conf" / "base", target / "conf" / "base")
    if (PROJECT_ROOT / "conf" / "gpu").exists():
        shutil.copytree(PROJECT_ROOT / "conf" / "gpu", target / "conf" / "gpu")
    for name in ("logging.yml", "slurm.yml"):  # read from the directory Kedro starts in, outside environments
        shutil.copy(PROJECT_ROOT / "conf" / name, target / "conf" / name)
    (target / "conf" / "local").mkdir(parents=True, exist_ok=True)
    (target / "conf" / "local" / "parameters.yml").write_text(yaml.safe_dump(parameters or TINY_PARAMETERS))
    return target


def kedro_command(*args: str) -> list[str]:
    """The `kedro` CLI of this environment with `args`."""
    return [sys.executable, "-m", "kedro", *args]


def kedro_env() -> dict[str, str]:
    """Offline, no telemetry, and the project's own MLflow store (no run or store inherited from outside)."""
    env = os.environ | {"KEDRO_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("MLFLOW_TRACKING_URI", None)
    return env


def kedro(project: Path, *args: str, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    """Runs the `kedro` CLI of this environment inside `project`."""
    result = subprocess.run(
        kedro_command(*args), cwd=project, env=kedro_env(), capture_output=True, text=True, timeout=timeout,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"kedro {' '.join(args)} failed ({result.returncode}):\n{result.stdout[-4000:]}\n"
                             f"{result.stderr[-8000:]}")
    return result


def project_run_label(project: Path, runtime_params: dict | None = None) -> str:
    """The run label (rewardlab.run_identity) of a `kedro run` in `project` with these `--params`."""
    from rewardlab.run_identity import run_identity
    from rewardlab.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    loader = CONFIG_LOADER_CLASS(conf_source=str(project / "conf"), runtime_params=runtime_params or {},
                                 **CONFIG_LOADER_ARGS)
    return run_identity(loader["parameters"]).label


def mlflow_runs(project: Path) -> list:
    """Every run in the project's tracking store (kedro-mlflow creates the store and experiment up front)."""
    from mlflow.tracking import MlflowClient

    if not (project / "mlflow.db").exists():
        return []
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments) if experiments else []


def kill_tree(process: subprocess.Popen, children: list) -> None:
    """Kills `process`, if still running, and its `children` (psutil processes; found now when none were
    recorded): whatever a test of stopping failed at, nothing it started outlives it."""
    import contextlib

    import psutil

    if process.poll() is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            children = children or psutil.Process(process.pid).children(recursive=True)
        process.kill()
        process.wait()
    for child in children:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()


def signal_and_reap(process: subprocess.Popen, signum: int, wait_s: float = 180) -> tuple[int, list, list]:
    """Sends `signum` to `process` and waits for it and every process it had started then; returns its exit code,
    those descendants, and the ones still alive 30 s after it ended."""
    import psutil

    descendants = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(signum)
    returncode = process.wait(timeout=wait_s)
    _, alive = psutil.wait_procs(descendants, timeout=30)
    return returncode, descendants, alive
