"""Project commands added to the `kedro` CLI: `kedro grid` runs the training grid, one MLflow run per variant;
`kedro run` is Kedro's, ending a failure the user can fix with its message (rewardlab.run_command)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import click

from rewardlab.run_command import run

FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@click.group(name="rewardlab")
def cli() -> None:
    """RewardLab project commands."""


cli.add_command(run)


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _point_parameters(extra_params: str, variant: str, noise: str, seed: str) -> dict:
    """The `--params` of one grid point, nested as Kedro's `kedro run --params` reads them."""
    from omegaconf import OmegaConf

    dotlist = _split(extra_params)
    dotlist += [f"grm_train.variant={variant}", f"grm_train.noise_rate={noise}", f"grm_train.seed={seed}"]
    return OmegaConf.to_container(OmegaConf.from_dotlist(dotlist))


def _project_config(env: str | None, runtime_params: dict | None = None):
    """The project's configuration as `kedro run --env <env> --params ...` sees it."""
    from kedro.utils import find_kedro_project

    from rewardlab.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS

    root = find_kedro_project(Path.cwd()) or Path.cwd()
    return root, CONFIG_LOADER_CLASS(conf_source=str(root / "conf"), env=env, runtime_params=runtime_params or {},
                                     **CONFIG_LOADER_ARGS)


# The pipelines that write one result file per run label, and the catalog entry of the folder: a grid point is
# done when each of these pipelines it runs has written its file.
PER_RUN_RESULTS = {"ood_eval": "ood_results_by_run", "rl": "rl_curves_by_run"}


def _results_dir(env: str | None, entry: str = "ood_results_by_run") -> Path:
    """Where a pipeline writes one result file per run label (`ood_eval` by default), as the catalog of `env`
    says."""
    root, config = _project_config(env)
    path = Path(config["catalog"][entry]["path"])
    return path if path.is_absolute() else root / path


def _point_label(env: str | None, runtime_params: dict) -> str:
    """The run label a grid point's run will have (rewardlab.run_identity): its parameters are checked here,
    so a bad `--params` stops the grid before its first point."""
    from rewardlab.config import check_parameters
    from rewardlab.run_identity import run_identity

    parameters = _project_config(env, runtime_params)[1]["parameters"]
    check_parameters(parameters)
    return run_identity(parameters).label


def _run_point(command: list[str]) -> tuple[int, str | None]:
    """Runs one grid point; returns its exit code and the name of the signal that stopped the grid, if any.

    The run gets its own process group, so a SIGTERM or Ctrl-C reaches it once, through the grid: it then
    ends its MLflow run FAILED and stops its training processes, and the grid waits for that instead of
    leaving the run behind (SIGTERM to the grid alone) or killing it half-way (`subprocess.run` on Ctrl-C).
    """
    process = subprocess.Popen(command, env=os.environ | {"KEDRO_DISABLE_TELEMETRY": "true"},
                               start_new_session=True)
    received: list[str] = []

    def forward(signum: int, frame) -> None:
        received.append(signal.Signals(signum).name)
        process.send_signal(signum)

    previous = {signum: signal.signal(signum, forward) for signum in FORWARDED_SIGNALS}
    try:
        returncode = process.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return returncode, received[0] if received else None


def grid_points(variants: list[str], noise_rates: list[str], seeds: list[str]) -> list[tuple[str, str, str]]:
    """(variant, noise rate, seed) per grid point, seed-major: a grid stopped part-way has trained every variant
    and noise rate on the same seeds, so its comparison stays balanced."""
    return [(variant, noise, seed) for seed in seeds for noise in noise_rates for variant in variants]


def _point_command(pipelines: str, env: str | None, extra_params: str, variant: str, noise: str,
                   seed: str) -> list[str]:
    params = f"grm_train.variant={variant},grm_train.noise_rate={noise},grm_train.seed={seed}"
    if extra_params:
        params += "," + extra_params
    command = [sys.executable, "-m", "kedro", "run", "--pipelines", pipelines, "--params", params]
    return command + ["--env", env] if env else command


@cli.command("grid")
@click.option("--variants", default="bt,grm_sft,grm_dpo_noref,bsr", show_default=True,
              help="Comma-separated names from grm_train.variants.")
@click.option("--noise", "noise_rates", default="0,0.25", show_default=True, help="Label-noise rates.")
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Training seeds (the outer loop: every variant and noise rate runs on a seed before the next).")
@click.option("--pipelines", default="grm_train,ood_eval,bon", show_default=True,
              help="Pipelines each grid point runs (after `kedro run --pipelines world,ingest` made the inputs); "
                   "add rl to optimize a policy against each point's reward model.")
@click.option("--env", "-e", default=None, help="Kedro configuration environment.")
@click.option("--params", "extra_params", default="", help="Extra --params for every run, e.g. 'bon.num_samples=64'.")
@click.option("--skip-done/--no-skip-done", default=True, show_default=True,
              help="Skip grid points whose results already exist (those of ood_eval and of rl, among the "
                   "--pipelines).")
@click.option("--executor", type=click.Choice(["local", "slurm"]), default="local", show_default=True,
              help="local: the points one after the other, as `kedro run` subprocesses; slurm: each point its own "
                   "Slurm job (through submitit), several at once, with the job settings of conf/slurm.yml.")
@click.option("--max-parallel", type=click.IntRange(min=1), default=4, show_default=True,
              help="With --executor slurm: most grid points queued or running at once.")
@click.option("--slurm-local", is_flag=True,
              help="With --executor slurm: run the Slurm path on this machine with submitit's local executor, "
                   "for tests (same as `cluster: local` in conf/slurm.yml).")
def grid(variants: str, noise_rates: str, seeds: str, pipelines: str, env: str | None, extra_params: str,
         skip_done: bool, executor: str, max_parallel: int, slurm_local: bool) -> None:
    """Train and evaluate every variant x noise rate x seed, each as its own `kedro run` and MLflow run."""
    from rewardlab.errors import ExpectedError

    if slurm_local and executor != "slurm":
        raise click.UsageError("--slurm-local goes with --executor slurm")
    points = grid_points(_split(variants), _split(noise_rates), _split(seeds))
    done_dirs = [_results_dir(env, entry) for name, entry in PER_RUN_RESULTS.items()
                 if name in _split(pipelines)] if skip_done else []
    try:
        labels = [_point_label(env, _point_parameters(extra_params, *point)) for point in points]
        slurm = _slurm_settings(env, slurm_local) if executor == "slurm" else None
    except ExpectedError as error:
        raise click.ClickException(str(error)) from None
    todo = []
    for index, (point, label) in enumerate(zip(points, labels), start=1):
        if done_dirs and all((folder / f"{label}.csv").exists() for folder in done_dirs):
            click.echo(f"[{index}/{len(points)}] {label}: already evaluated, skipped")
            continue
        todo.append((index, label, _point_command(pipelines, env, extra_params, *point)))
    if slurm is not None:
        _grid_on_slurm(todo, len(points), *slurm, max_parallel)
        return
    for index, label, command in todo:
        click.echo(f"[{index}/{len(points)}] {label}: {' '.join(command[1:])}")
        returncode, stopped_by = _run_point(command)
        if stopped_by:
            raise click.ClickException(f"grid stopped by {stopped_by} at {label} (its run exited {returncode}); "
                                       "rerun `kedro grid` with the same options to resume")
        if returncode != 0:
            raise click.ClickException(f"grid point {label} failed (exit {returncode}); "
                                       "rerun `kedro grid` with the same options to resume")


def _slurm_settings(env: str | None, slurm_local: bool):
    """The project root and conf/slurm.yml's settings (`--slurm-local` switches them to the local executor)."""
    from rewardlab.slurm import load_slurm_config

    root = _project_config(env)[0]
    config = load_slurm_config(root / "conf" / "slurm.yml")
    if slurm_local:
        config = config.model_copy(update={"cluster": "local"})
    return root, config


def _grid_on_slurm(todo: list[tuple[int, str, list[str]]], total: int, root: Path, config,
                   max_parallel: int) -> None:
    """Each point of `todo` as its own job, `max_parallel` at once; fails naming the points that did not complete."""
    from rewardlab import slurm

    log_dir = Path(config.log_dir) if Path(config.log_dir).is_absolute() else root / config.log_dir
    try:
        executor = slurm.make_executor(config, log_dir / "%j", slurm.job_parameters(config, job_name="rewardlab-grid"))
    except RuntimeError as error:  # submitit finds no `srun`: not on a Slurm cluster
        raise click.ClickException(f"{error} (--slurm-local runs the jobs on this machine)") from None
    points = []
    for index, label, command in todo:
        click.echo(f"[{index}/{total}] {label}: {' '.join(command[1:])}")
        points.append(slurm.GridJob(label, command))
    click.echo(f"{len(points)} grid points as {config.cluster} jobs, at most {max_parallel} at once; "
               f"logs in {log_dir}")
    try:
        # Local jobs are processes here, cheap to look at; Slurm's are asked through sacct.
        poll_seconds = config.poll_seconds if config.cluster == "slurm" else 1.0
        slurm.run_grid_jobs(points, executor, root, max_parallel=max_parallel, poll_seconds=poll_seconds,
                            echo=click.echo)
    except slurm.GridStopped as stopped:
        raise click.ClickException(f"grid stopped by {stopped.signal_name}: cancelled "
                                   f"{', '.join(stopped.cancelled)}; rerun `kedro grid` with the same options "
                                   "to resume") from None
    failed = [point.label for point in points if point.state != "COMPLETED"]
    if failed:
        raise click.ClickException(f"grid points failed: {', '.join(failed)} (their output is in {log_dir}); "
                                   "rerun `kedro grid` with the same options to resume")
