"""Project commands added to the `kedro` CLI: `kedro grid` runs the training grid, one MLflow run per variant;
`kedro run` is Kedro's, ending a failure the user can fix with its message (rewardlab.run_command)."""

from __future__ import annotations

import itertools
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


def _results_dir(env: str | None) -> Path:
    """Where `ood_eval` writes one result file per run label, as the catalog of `env` says."""
    root, config = _project_config(env)
    path = Path(config["catalog"]["ood_results_by_run"]["path"])
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


@cli.command("grid")
@click.option("--variants", default="bt,grm_sft,grm_dpo_noref,bsr", show_default=True,
              help="Comma-separated names from grm_train.variants.")
@click.option("--noise", "noise_rates", default="0,0.25", show_default=True, help="Label-noise rates.")
@click.option("--seeds", default="0,1,2", show_default=True, help="Training seeds.")
@click.option("--pipelines", default="grm_train,ood_eval,bon", show_default=True,
              help="Pipelines each grid point runs (after `kedro run --pipelines world,ingest` made the inputs).")
@click.option("--env", "-e", default=None, help="Kedro configuration environment.")
@click.option("--params", "extra_params", default="", help="Extra --params for every run, e.g. 'bon.num_samples=64'.")
@click.option("--skip-done/--no-skip-done", default=True, show_default=True,
              help="Skip grid points whose evaluation results already exist.")
def grid(variants: str, noise_rates: str, seeds: str, pipelines: str, env: str | None, extra_params: str,
         skip_done: bool) -> None:
    """Train and evaluate every variant x noise rate x seed, each as its own `kedro run` and MLflow run."""
    from rewardlab.errors import ExpectedError

    points = list(itertools.product(_split(variants), _split(noise_rates), _split(seeds)))
    done_dir = _results_dir(env) if skip_done else None
    try:
        labels = [_point_label(env, _point_parameters(extra_params, *point)) for point in points]
    except ExpectedError as error:
        raise click.ClickException(str(error)) from None
    for index, ((variant, noise, seed), label) in enumerate(zip(points, labels), start=1):
        if done_dir is not None and "ood_eval" in pipelines and (done_dir / f"{label}.csv").exists():
            click.echo(f"[{index}/{len(points)}] {label}: already evaluated, skipped")
            continue
        params = f"grm_train.variant={variant},grm_train.noise_rate={noise},grm_train.seed={seed}"
        if extra_params:
            params += "," + extra_params
        command = [sys.executable, "-m", "kedro", "run", "--pipelines", pipelines, "--params", params]
        if env:
            command += ["--env", env]
        click.echo(f"[{index}/{len(points)}] {label}: {' '.join(command[1:])}")
        returncode, stopped_by = _run_point(command)
        if stopped_by:
            raise click.ClickException(f"grid stopped by {stopped_by} at {label} (its run exited {returncode}); "
                                       "rerun `kedro grid` with the same options to resume")
        if returncode != 0:
            raise click.ClickException(f"grid point {label} failed (exit {returncode}); "
                                       "rerun `kedro grid` with the same options to resume")
