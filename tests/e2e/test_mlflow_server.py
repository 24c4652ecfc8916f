"""The MLflow tracking server on the project's sqlite store, after a small training grid: its REST API lists
one run per grid point with parameters, metrics, tags and artifacts, and its UI renders in a browser."""

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
    page_title,
    png_stats,
    screenshot,
)
from project_copy import kedro

pytestmark = pytest.mark.slow

VARIANTS = ("bt", "grm_sft")


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


def test_ui_renders_the_runs(mlflow_server, experiment, runs, tmp_path):
    chromium = find_chromium()
    if chromium is None:
        pytest.skip(CHROMIUM_MISSING)
    url, server = mlflow_server
    page = f"{url}/#/experiments/{experiment['experiment_id']}/runs"
    dom = dump_dom(chromium, page, profile_dir=tmp_path / "profile", budget_ms=20000)
    assert "MLflow" in page_title(dom), f"title {page_title(dom)!r}\nserver log:\n{server.log_tail()}"
    assert elements(dom, lambda e: e["tag"] == "div" and e["attrs"].get("id") == "root")
    text = " ".join(e["text"] for e in elements(dom))
    for run in runs:
        assert run["info"]["run_name"] in text, f"run {run['info']['run_name']!r} is not listed in the UI"
    shot = screenshot(chromium, page, tmp_path / "mlflow-ui.png", profile_dir=tmp_path / "profile",
                      budget_ms=20000)
    stats = png_stats(shot)
    assert stats["colours"] > 50 and stats["std"] > 10, stats
