"""The MLflow tracking server on the project's sqlite store, after a small training grid: its REST API lists
one run per grid point with parameters, metrics, tags, dataset inputs and artifacts, and its UI, in a browser,
opens the experiment on its training runs, named by their labels, with the pairs they were trained on."""

from __future__ import annotations

import json
import os
import shutil
import sys
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from browser import (
    CHROMIUM_MISSING,
    HOST,
    ServerProcess,
    dump_dom,
    elements,
    find_chromium,
    free_port,
    grid_cells,
    page_title,
    png_stats,
    screenshot,
)
from project_copy import kedro

pytestmark = pytest.mark.slow

VARIANTS = ("bt", "grm_sft")
# The MLflow UI (3.17) shows an experiment as GenAI (traces, token usage) or as model training (runs) by a
# setting of the browser (`mlflow.workflowType` in its local storage, GenAI unless changed), which this
# parameter overrides; it does not read the experiment's `mlflow.experimentKind` tag for that.
TRAINING_VIEW = "?workflowType=machine_learning"
# Wide enough for every column of the runs table (grids leave out of the DOM the columns that do not fit).
WINDOW = "1920,1000"
EVALUATION_SETS = {"validation_pairs", "world_test_pairs", "world_ood_prompt_pairs", "world_ood_response_pairs",
                   "world_ood_both_pairs"}


@pytest.fixture(scope="module")
def grid_project(tiny_project, tmp_path_factory) -> Path:
    """The tiny project's data (world and ingest outputs) in a copy with an empty tracking store, where
    `kedro grid` trains and evaluates two variants: two MLflow runs and nothing else."""
    project = tmp_path_factory.mktemp("mlflow") / "project"
    shutil.copytree(tiny_project, project, ignore=shutil.ignore_patterns("mlflow.db", "mlartifacts", "mlruns",
                                                                           "build", ".viz"))
    kedro(project, "grid", "--variants", ",".join(VARIANTS), "--noise", "0", "--seeds", "0",
          "--pipelines", "grm_train,ood_eval", timeout=1200)
    assert (project / "mlflow.db").is_file()
    return project


@pytest.fixture(scope="module")
def mlflow_server(grid_project):
    """`mlflow server` on the project's store, one worker, on a free port of 127.0.0.1; stopped (the whole
    process group: uvicorn and the job consumers it starts) when the module's tests are done."""
    port = free_port()
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
               f"sqlite:///{grid_project / 'mlflow.db'}", "--host", HOST, "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    url = f"http://{HOST}:{port}"
    with ServerProcess(command, ready_url=f"{url}/health", cwd=grid_project, env=env,
                       log_path=grid_project / "mlflow-server.log", start_timeout=240) as server:
        yield url, server


def _get(base: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(query)}", timeout=30) as response:
        return json.load(response)


def _post(base: str, path: str, body: dict) -> dict:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


@pytest.fixture(scope="module")
def experiment(mlflow_server) -> dict:
    url, _ = mlflow_server
    return _get(url, "/api/2.0/mlflow/experiments/get-by-name", experiment_name="rewardlab")["experiment"]


@pytest.fixture(scope="module")
def runs(mlflow_server, experiment) -> list[dict]:
    url, _ = mlflow_server
    found = _post(url, "/api/2.0/mlflow/runs/search",
                  {"experiment_ids": [experiment["experiment_id"]], "max_results": 100})
    return found.get("runs", [])


def _params(run: dict) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def _metrics(run: dict) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def _tags(run: dict) -> dict[str, str]:
    return {t["key"]: t["value"] for t in run["data"].get("tags", [])}


def test_experiment_is_found_by_name(experiment):
    assert experiment["name"] == "rewardlab"
    assert experiment["lifecycle_stage"] == "active"


def test_experiment_is_created_as_model_training(experiment):
    tags = {t["key"]: t["value"] for t in experiment.get("tags", [])}
    assert tags.get("mlflow.experimentKind") == "custom_model_development", tags


def test_runs_are_named_by_their_label(runs):
    assert sorted(run["info"]["run_name"] for run in runs) == sorted(_tags(run)["run_label"] for run in runs)


def test_runs_log_their_training_and_evaluation_pairs(runs):
    for run in runs:
        inputs = {}
        for item in run.get("inputs", {}).get("dataset_inputs", []):
            context = {t["key"]: t["value"] for t in item.get("tags", [])}.get("mlflow.data.context")
            inputs[item["dataset"]["name"]] = (context, item["dataset"])
        assert inputs.get("noisy_train_pairs", (None,))[0] == "training", sorted(inputs)
        assert {name for name, (context, _) in inputs.items() if context == "evaluation"} == EVALUATION_SETS
        training = inputs["noisy_train_pairs"][1]
        assert len(training["digest"]) == 8
        source = json.loads(training["source"])["uri"]
        assert "/data/05_model_input/noisy_train_pairs.parquet/" in source and Path(source).is_file(), source


def test_one_finished_run_per_grid_point(runs):
    assert len(runs) == len(VARIANTS), [r["info"]["run_name"] for r in runs]
    assert sorted(_params(run)["grm_train.variant"] for run in runs) == sorted(VARIANTS)
    for run in runs:
        assert run["info"]["status"] == "FINISHED"
        params = _params(run)
        assert float(params["grm_train.noise_rate"]) == 0.0
        assert params["grm_train.seed"] == "0"
        tags = _tags(run)
        assert tags["variant"] == params["grm_train.variant"]
        assert tags["run_label"].startswith(f"{params['grm_train.variant']}__noise0__seed0__")


def test_runs_carry_training_and_evaluation_metrics(runs):
    for run in runs:
        metrics = _metrics(run)
        for key in ("loss", "accuracy", "eval.test.accuracy", "eval.ood_prompt.accuracy", "noise.rate"):
            assert key in metrics, f"run {run['info']['run_name']} lacks metric {key}: {sorted(metrics)}"
        assert 0.0 <= metrics["eval.test.accuracy"] <= 1.0
        assert metrics["noise.rate"] == 0.0


def test_loss_history_has_one_value_per_logged_step(mlflow_server, runs):
    url, _ = mlflow_server
    run_id = runs[0]["info"]["run_id"]
    history = _get(url, "/api/2.0/mlflow/metrics/get-history", run_id=run_id, metric_key="loss")["metrics"]
    steps = [m["step"] for m in history]
    assert len(steps) > 1 and steps == sorted(steps)


def test_runs_list_their_artifacts(mlflow_server, runs):
    url, _ = mlflow_server
    for run in runs:
        files = _get(url, "/api/2.0/mlflow/artifacts/list", run_id=run["info"]["run_id"]).get("files", [])
        names = {Path(f["path"]).name for f in files}
        assert {"training_history.csv", "ood_metrics.csv", "comparison.md"} <= names, names


def _logged_models(url: str, experiment: dict) -> dict[str, list[str]]:
    """Names of the models (MLflow 3 logged models) each run logged, by run id."""
    found = _post(url, "/api/2.0/mlflow/logged-models/search", {"experiment_ids": [experiment["experiment_id"]]})
    models: dict[str, list[str]] = {}
    for model in found.get("models", []):
        models.setdefault(model["info"].get("source_run_id", ""), []).append(model["info"]["name"])
    return models


@pytest.fixture(scope="module")
def training_view(mlflow_server, experiment, tmp_path_factory) -> tuple[str, str]:
    """The experiment's page as a user opens it (the page's address and its DOM once rendered): the UI picks
    the tab itself, and the DOM is read after the app had 20 s of (virtual) time to fetch and render."""
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(CHROMIUM_MISSING)
    url, _ = mlflow_server
    page = f"{url}/#/experiments/{experiment['experiment_id']}{TRAINING_VIEW}"
    profile = tmp_path_factory.mktemp("chromium")
    return page, dump_dom(chromium, page, profile_dir=profile, budget_ms=20000, window_size=WINDOW)


def test_ui_opens_the_experiment_on_its_training_runs(mlflow_server, training_view, runs, tmp_path):
    _, server = mlflow_server
    page, dom = training_view
    assert page_title(dom).startswith("Runs - "), f"title {page_title(dom)!r}\nserver log:\n{server.log_tail()}"
    assert elements(dom, lambda e: e["tag"] == "div" and e["attrs"].get("id") == "root")
    rows = grid_cells(dom)
    assert set(rows) == {run["info"]["run_id"] for run in runs}, f"runs table rows: {rows}"
    columns = set().union(*(cells.keys() for cells in rows.values()))
    assert {"attributes.`Run Name`", "attributes.`Dataset`", "attributes.`Models`"} <= columns, columns
    shot = screenshot(find_chromium(), page, tmp_path / "mlflow-ui.png", profile_dir=tmp_path / "profile",
                      budget_ms=20000, window_size=WINDOW)
    stats = png_stats(shot)
    assert stats["colours"] > 50 and stats["std"] > 10, stats
    print(f"MLflow UI screenshot: {shot}")


def test_ui_names_each_run_by_its_label(training_view, runs):
    _, dom = training_view
    rows = grid_cells(dom)
    for run in runs:
        name_cell = rows[run["info"]["run_id"]]["attributes.`Run Name`"]
        assert _tags(run)["run_label"] in name_cell.split(), name_cell


def test_ui_shows_the_training_pairs_in_the_dataset_column(training_view, runs):
    _, dom = training_view
    rows = grid_cells(dom)
    for run in runs:
        dataset_cell = rows[run["info"]["run_id"]]["attributes.`Dataset`"]
        assert "noisy_train_pairs" in dataset_cell and "training" in dataset_cell, dataset_cell


def test_ui_shows_the_logged_models_in_the_models_column(mlflow_server, experiment, training_view, runs):
    """A registered model shows as its registry name and version, one only logged as its name."""
    url, _ = mlflow_server
    models = _logged_models(url, experiment)
    if not any(models.get(run["info"]["run_id"]) for run in runs):
        pytest.skip("the grid's runs logged no model (MLflow logged models): nothing for the Models column")
    _, dom = training_view
    rows = grid_cells(dom)
    for run in runs:
        run_id = run["info"]["run_id"]
        versions = _get(url, "/api/2.0/mlflow/model-versions/search", filter=f"run_id='{run_id}'")
        shown = [f"{v['name']} v{v['version']}" for v in versions.get("model_versions", [])] or models.get(run_id, [])
        models_cell = rows[run_id]["attributes.`Models`"]
        if shown:
            assert all(name in models_cell for name in shown), (shown, models_cell)
        else:  # a run whose model could not be exported (rewardlab.export) logs none
            assert models_cell == "-", models_cell
