"""`kedro grid` and the run identity: points that differ in any parameter keep their results apart, the skip
check knows them apart, and a bad `--params` stops the grid before its first point."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest
from project_copy import kedro, project_run_label

pytestmark = pytest.mark.slow

POINT = ["--variants", "bt", "--noise", "0", "--seeds", "0", "--pipelines", "grm_train,ood_eval"]


def test_a_grid_over_two_learning_rates_keeps_both_results_apart(tiny_project, tmp_path):
    from mlflow.tracking import MlflowClient

    project = tmp_path / "p"
    shutil.copytree(tiny_project, project)
    results = project / "data" / "08_reporting" / "ood_results_by_run"
    labels = []
    for rate in (0.002, 0.004):
        kedro(project, "grid", *POINT, "--params", f"grm_train.train.learning_rate={rate}")
        labels.append(project_run_label(project, {"grm_train": {"variant": "bt", "noise_rate": 0, "seed": 0,
                                                                 "train": {"learning_rate": rate}}}))
    assert labels[0] != labels[1] and all(label.startswith("bt__noise0__seed0__") for label in labels)
    frames = [pd.read_csv(results / f"{label}.csv") for label in labels]
    assert [set(frame["run_label"]) for frame in frames] == [{labels[0]}, {labels[1]}]
    variants = [frame["variant"].iloc[0] for frame in frames]
    assert variants[0] != variants[1]  # the comparison groups them apart
    comparison = (project / "data" / "08_reporting" / "comparison.md").read_text()
    assert all(f"| {variant} |" in comparison for variant in variants), comparison

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("rewardlab")
    tagged = {run.data.tags.get("run_label") for run in client.search_runs([experiment.experiment_id])}
    assert set(labels) <= tagged

    again = kedro(project, "grid", *POINT, "--params", "grm_train.train.learning_rate=0.002")
    assert f"{labels[0]}: already evaluated, skipped" in again.stdout
    assert len(client.search_runs([experiment.experiment_id])) == len(tagged)  # nothing ran


def test_a_bad_grid_parameter_stops_the_grid_before_its_first_point(tiny_project, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(tiny_project, project)
    result = kedro(project, "grid", *POINT, "--params", "grm_train.train.learning_rate=-1", check=False)
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0
    assert "grm_train.train.learning_rate must be > 0.0, got -1" in output, output[-3000:]
    assert "kedro run" not in result.stdout  # no point was started
