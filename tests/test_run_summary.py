"""The summary `kedro run` prints once a run succeeded, made from metrics and paths alone."""

from __future__ import annotations

import sys
from pathlib import Path, PurePath

from rewardlab.run_summary import (
    dataset_path,
    eval_accuracies,
    format_run_summary,
    gold_peak,
    is_report,
    mlflow_ui_command,
    relative_to_project,
)

RUN_ID = "d608ac0faa8145ae81eeb1272741c451"
METRICS = {
    "loss": 1.25834, "eval_accuracy": 0.575, "eval_loss": 0.69, "learning_rate": 4e-6,
    "eval.ood_both.accuracy": 0.6, "eval.test.accuracy": 0.525, "eval.ood_prompt.accuracy": 0.75,
    "eval.ood_response.accuracy": 0.6, "eval.test.ece": 0.078, "eval.extra_set.accuracy": 0.5,
    "bon.gold": 0.0401, "ingest.rows_kept": 240.0,
}
BON_GOLD = [(1, 0.01), (2, 0.0723), (3, 0.0723), (8, 0.0401)]


def test_the_full_summary_has_metrics_reports_and_the_ui_command():
    text = format_run_summary(
        run_id=RUN_ID, metrics=METRICS, bon_gold=BON_GOLD,
        reports=["data/08_reporting/ood_metrics.csv", "data/08_reporting/comparison.png",
                 "data/08_reporting/comparison.md", "data/08_reporting/bon_peaks.md"],
        mlflow_ui="make mlflow-ui", run_url=f"http://127.0.0.1:5000/#/experiments/1/runs/{RUN_ID}",
        runs_url="http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning",
    )
    assert text.splitlines() == [
        f"Run finished: MLflow run {RUN_ID}",
        "  Training:   loss 1.258 (validation accuracy 0.575)",
        "  Accuracy:   test 0.525, ood_prompt 0.75, ood_response 0.6, ood_both 0.6, extra_set 0.5",
        "  Best-of-n:  gold peaks at 0.0723 with n=2 (0.0401 at n=8)",
        "  Reports:    data/08_reporting/bon_peaks.md",
        "              data/08_reporting/comparison.md",
        "              data/08_reporting/comparison.png",
        "              data/08_reporting/ood_metrics.csv",
        "  MLflow UI:  make mlflow-ui",
        f"              then open http://127.0.0.1:5000/#/experiments/1/runs/{RUN_ID}",
        "              or every run: http://127.0.0.1:5000/#/experiments/1?workflowType=machine_learning",
    ]


def test_only_what_the_run_recorded_is_shown():
    text = format_run_summary(run_id=RUN_ID, metrics={"ingest.rows_kept": 240.0},
                              reports=["data/08_reporting/ingest_report.json"], mlflow_ui="mlflow server")
    assert text.splitlines() == [
        f"Run finished: MLflow run {RUN_ID}",
        "  Reports:    data/08_reporting/ingest_report.json",
        "  MLflow UI:  mlflow server",
    ]
    assert format_run_summary(run_id=None, metrics={}) == "Run finished (not tracked in MLflow)"


def test_each_ensemble_member_shows_its_loss():
    metrics = {"member0.loss": 0.5, "member0.eval_accuracy": 0.7, "member1.loss": 0.25}
    (line,) = [line for line in format_run_summary(run_id="r", metrics=metrics).splitlines() if "Training" in line]
    assert line == "  Training:   member0 loss 0.5 (validation accuracy 0.7), member1 loss 0.25"


def test_eval_accuracies_follow_the_comparison_tables_order():
    assert list(eval_accuracies(METRICS)) == ["test", "ood_prompt", "ood_response", "ood_both", "extra_set"]
    assert eval_accuracies({"eval.test.ece": 0.1, "accuracy": 0.2}) == {}


def test_gold_peak_takes_the_smallest_n_on_a_tie():
    assert gold_peak(BON_GOLD) == (2, 0.0723)
    assert gold_peak(list(reversed(BON_GOLD))) == (2, 0.0723)
    assert gold_peak([]) is None


def test_reports_are_the_files_of_the_reporting_layer():
    assert is_report(PurePath("/p/data/08_reporting/comparison.md"))
    assert not is_report(PurePath("/p/data/07_model_output/ood_scores.parquet"))
    assert relative_to_project("/p/data/08_reporting/comparison.md", Path("/p")) == "data/08_reporting/comparison.md"
    assert relative_to_project("/elsewhere/comparison.md", Path("/p")) == "/elsewhere/comparison.md"


class _FileDataset:
    def __init__(self, filepath: str) -> None:
        self._filepath = PurePath(filepath)
        self._version = None


class _VersionedDataset(_FileDataset):
    def __init__(self, filepath: str) -> None:
        super().__init__(filepath)
        self._version = object()

    def resolve_save_version(self) -> str:
        return "2026-01-01T00.00.00.000Z"

    def _get_versioned_path(self, version: str) -> PurePath:
        return self._filepath / version / self._filepath.name


def test_dataset_path_is_the_file_a_dataset_saved():
    assert dataset_path(_FileDataset("/p/data/08_reporting/comparison.md")) == PurePath(
        "/p/data/08_reporting/comparison.md")
    assert dataset_path(_VersionedDataset("/p/data/08_reporting/ingest_report.json")) == PurePath(
        "/p/data/08_reporting/ingest_report.json/2026-01-01T00.00.00.000Z/ingest_report.json")
    assert dataset_path(object()) is None


def test_the_ui_command_is_make_only_where_the_makefile_serves_this_store(tmp_path):
    uri = f"sqlite:///{(tmp_path / 'mlflow.db').as_posix()}"
    command = mlflow_ui_command(uri, tmp_path, "127.0.0.1", "5000")
    assert command.endswith(f"server --backend-store-uri {uri} --host 127.0.0.1 --port 5000 --workers 1")
    (tmp_path / "Makefile").write_text("mlflow-ui: install\n\tmlflow server\n")
    assert mlflow_ui_command(uri, tmp_path) == "make mlflow-ui"
    other = f"sqlite:///{(tmp_path / 'elsewhere.db').as_posix()}"
    assert mlflow_ui_command(other, tmp_path).split()[0] in {"mlflow", str(Path(sys.executable).parent / "mlflow")}
