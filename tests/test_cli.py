"""`kedro grid` finds the evaluation results it skips where the catalog of the chosen environment puts them."""

from __future__ import annotations

from pathlib import Path

from rewardlab.cli import _results_dir

PROJECT_ROOT = Path(__file__).resolve().parents[1]


def test_results_dir_follows_the_environment_from_any_folder_of_the_project(monkeypatch):
    monkeypatch.chdir(PROJECT_ROOT / "notebooks")
    assert _results_dir(None) == PROJECT_ROOT / "data" / "08_reporting" / "ood_results_by_run"
    assert _results_dir("gpu") == PROJECT_ROOT / "data" / "gpu" / "08_reporting" / "ood_results_by_run"
