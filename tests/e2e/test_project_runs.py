"""The Kedro project as a user drives it: registry, the default DAG, MLflow tracking, run guards, viz build,
a run stopped by SIGTERM or Ctrl-C."""

from __future__ import annotations

import copy
import json
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pandas as pd
import psutil
import pytest

from project_copy import (TINY_PARAMETERS, kedro, kedro_command, kedro_env, kill_tree, make_project_copy,
                          project_run_label)

pytestmark = pytest.mark.slow

PIPELINES = ("world", "ingest", "grm_train", "ood_eval", "bon", "__default__")


def _latest(path: Path) -> Path:
    """The newest version of a versioned dataset at `path`."""
    versions = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    assert versions, f"no versions under {path}"
    return versions[-1] / path.name


def test_registry_lists_every_pipeline(tmp_path):
    project = make_project_copy(tmp_path / "p")
    out = kedro(project, "registry", "list").stdout
    for name in PIPELINES:
        assert f"- {name}" in out


def test_training_on_a_fresh_clone_stops_at_once_naming_the_command(tmp_path):
    project = make_project_copy(tmp_path / "p")
    result = kedro(project, "run", "--pipeline", "grm_train", check=False)
    assert result.returncode != 0
    message = result.stdout + result.stderr
    assert "'train_pairs' does not exist yet: make it with `kedro run --pipelines ingest`" in message
    assert "'base_model' does not exist yet: make it with `kedro run --pipelines world`" in message
    assert not (project / "data" / "06_models").exists()


def test_viz_build_works_offline(tmp_path):
    project = make_project_copy(tmp_path / "p")
    kedro(project, "viz", "build", timeout=300)
    main = json.loads((project / "build" / "api" / "main").read_text())
    names = {node["name"] for node in main["nodes"]}
    assert {"pretrain_policy", "ingest_pairs", "train_reward_model", "score_eval_sets", "sample_policy"} <= {
        n.split(".")[-1] for n in names
    } | names


def test_default_dag_writes_versioned_outputs(tiny_project):
    data = tiny_project / "data"
    train = pd.read_parquet(_latest(data / "03_primary" / "train_pairs.parquet"))
    record = pd.read_parquet(_latest(data / "05_model_input" / "noise_record.parquet"))
    assert len(record) == len(train)
    assert record["swapped"].sum() == round(0.25 * len(train))
    model_dir = _latest(data / "06_models" / "reward_model")
    assert (model_dir / "reward_config.json").exists()
    metrics = pd.read_csv(data / "08_reporting" / "ood_metrics.csv")
    assert {"test", "ood_prompt", "ood_response", "ood_both"} <= set(metrics["eval_set"])
    assert metrics["accuracy"].between(0, 1).all()
    curves = pd.read_csv(data / "08_reporting" / "bon_curves.csv")
    assert curves["n"].max() == 8 and curves.loc[curves["n"] == 1, "gold"].abs().max() < 1e-9
    assert (data / "08_reporting" / "comparison.md").read_text().count("grm_sft") >= 1
    assert (data / "08_reporting" / "bon_curves.png").stat().st_size > 1000


def test_default_dag_is_one_mlflow_run_with_params_and_metrics(tiny_project):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tiny_project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rewardlab")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    assert params["grm_train.variant"] == "grm_sft"
    assert float(params["grm_train.noise_rate"]) == 0.25
    assert params["world.n_train_pairs"] == "240"
    assert run.data.tags["run_label"] == project_run_label(tiny_project)
    assert run.data.tags["run_label"].startswith("grm_sft__noise0.25__seed0__cfg-")  # the tiny world differs
    for key in ("noise.swapped", "ingest.rows_kept", "eval.test.accuracy", "eval.ood_both.accuracy", "loss",
                "bt", "reg", "accuracy", "hidden_norm_dispersion"):
        assert key in metrics, f"metric {key} missing from {sorted(metrics)}"
    history = client.get_metric_history(run.info.run_id, "loss")
    assert len(history) > 5  # per-step logging
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert "reward_model" in artifacts


def test_a_run_started_in_a_subdirectory_tracks_into_the_projects_store(tiny_project, tmp_path):
    from mlflow.tracking import MlflowClient

    project = tmp_path / "project"
    shutil.copytree(tiny_project, project, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "build"))
    notebooks = project / "notebooks"
    notebooks.mkdir(exist_ok=True)
    done = subprocess.run(kedro_command("run", "--pipelines", "ood_eval"), cwd=notebooks, env=kedro_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert not any((notebooks / name).exists() for name in ("mlflow.db", "mlartifacts"))
    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rewardlab")
    assert Path(experiment.artifact_location.removeprefix("file://")) == project / "mlartifacts"
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and "eval.test.accuracy" in run.data.metrics
    assert any(a.path == "ood_metrics.csv" for a in client.list_artifacts(run.info.run_id))
    assert list((project / "mlartifacts").rglob("ood_metrics.csv"))


def _poll(condition, what: str, process: subprocess.Popen, log: Path, timeout: float = 120):
    """`condition()`'s first truthy value; fails when the run exits first or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no {what} (kedro exit code {process.poll()}):\n{log.read_text()[-6000:]}")
        time.sleep(0.2)
    return value


def _long_training_project(tiny_project: Path, target: Path, num_processes: int = 1) -> Path:
    """A project copy holding grm_train's inputs, whose training runs far longer than a test waits for."""
    parameters = copy.deepcopy(TINY_PARAMETERS)
    parameters["grm_train"]["train"].update(num_epochs=1000, checkpoint_every=5, num_processes=num_processes)
    project = make_project_copy(target, parameters)
    for inputs in ("03_primary", "06_models/base_model"):  # grm_train's inputs, made by the tiny project's run
        shutil.copytree(tiny_project / "data" / inputs, project / "data" / inputs)
    return project


@pytest.mark.parametrize(("signum", "num_processes"), [
    (signal.SIGTERM, 1), (signal.SIGTERM, 2), (signal.SIGINT, 1),
], ids=["sigterm-in_process", "sigterm-torchrun", "sigint-in_process"])
def test_a_stopped_run_ends_failed_in_mlflow_and_keeps_what_was_saved(tiny_project, tmp_path, signum, num_processes):
    from mlflow.tracking import MlflowClient

    from rewardlab.training.checkpoint import find_latest_checkpoint, read_meta

    project = _long_training_project(tiny_project, tmp_path / "p", num_processes)
    state_dir = project / "data" / "06_models" / "training_state" / project_run_label(project) / "member0"
    log = tmp_path / "kedro.log"
    with open(log, "w") as out:
        # SIGINT as in a terminal, even where this test itself runs with SIGINT ignored (a background job).
        process = subprocess.Popen(kedro_command("run", "--pipeline", "grm_train"), cwd=project, env=kedro_env(),
                                   stdout=out, stderr=subprocess.STDOUT,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children: list[psutil.Process] = []
    try:
        saved_step = read_meta(_poll(lambda: find_latest_checkpoint(state_dir), "checkpoint", process, log))["step"]
        client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
        experiment = client.get_experiment_by_name("rewardlab")
        (run,) = client.search_runs([experiment.experiment_id])
        assert run.info.status == "RUNNING"
        logged = len(_poll(lambda: client.get_metric_history(run.info.run_id, "loss"), "loss metric", process, log))
        noise_record = _latest(project / "data" / "05_model_input" / "noise_record.parquet")
        children = psutil.Process(process.pid).children(recursive=True)
        assert children or num_processes == 1  # `torchrun` and its workers

        process.send_signal(signum)
        returncode = process.wait(timeout=90)
        _, alive = psutil.wait_procs(children, timeout=30)
    finally:  # whatever failed, neither the run nor its training processes outlive the test
        kill_tree(process, children)
    output = log.read_text()
    assert returncode != 0, output[-6000:]
    run = client.get_run(run.info.run_id)
    assert run.info.status == "FAILED", output[-6000:]
    assert run.info.end_time is not None
    assert f"RunTerminated: received {signum.name}" in output, output[-6000:]
    assert not alive, f"training processes left running: {alive}"
    assert len(client.get_metric_history(run.info.run_id, "loss")) >= logged  # metrics logged before are kept
    # Saved before the signal and untouched by it: the versioned noise record and a complete checkpoint.
    train_pairs = pd.read_parquet(_latest(project / "data" / "03_primary" / "train_pairs.parquet"))
    assert len(pd.read_parquet(noise_record)) == len(train_pairs)
    latest = find_latest_checkpoint(state_dir)
    assert latest is not None and read_meta(latest)["step"] >= saved_step
    assert (latest / "trainable.safetensors").stat().st_size > 0


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
def test_a_stopped_grid_stops_its_run_which_ends_failed(tiny_project, tmp_path, signum):
    """A signal to `kedro grid` alone (not its process group): the running grid point is stopped too."""
    from mlflow.tracking import MlflowClient

    project = _long_training_project(tiny_project, tmp_path / "p")
    log = tmp_path / "grid.log"
    with open(log, "w") as out:
        grid = subprocess.Popen(kedro_command("grid", "--variants", "bt", "--noise", "0", "--seeds", "0",
                                              "--pipelines", "grm_train"),
                                cwd=project, env=kedro_env(), stdout=out, stderr=subprocess.STDOUT,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs: list[psutil.Process] = []
    try:
        client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")

        def running_run():
            experiment = (project / "mlflow.db").exists() and client.get_experiment_by_name("rewardlab")
            found = experiment and client.search_runs([experiment.experiment_id])
            return found[0] if found and client.get_metric_history(found[0].info.run_id, "loss") else None

        run = _poll(running_run, "MLflow run with a logged loss", grid, log)
        runs = psutil.Process(grid.pid).children(recursive=True)
        assert runs, "the grid point's `kedro run` is not a child of the grid"
        grid.send_signal(signum)
        try:
            returncode = grid.wait(timeout=90)
        except subprocess.TimeoutExpired:  # say where the grid and its run were when they did not stop
            raise AssertionError(f"the grid did not stop within 90 s of {signum.name}; still running: "
                                 f"{[p.cmdline()[-4:] for p in runs if p.is_running()]}\n"
                                 f"{log.read_text()[-6000:]}") from None
        _, alive = psutil.wait_procs(runs, timeout=30)
    finally:
        kill_tree(grid, runs)
    output = log.read_text()
    assert returncode != 0 and f"grid stopped by {signum.name} at bt__noise0__seed0" in output, output[-6000:]
    assert not alive, f"left running: {alive}"
    assert client.get_run(run.info.run_id).info.status == "FAILED", output[-6000:]
