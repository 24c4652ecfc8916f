"""The few lines `kedro run` prints once a run succeeded: its main metrics as MLflow recorded them, where the
reports it wrote are, and how to open the MLflow UI on it.

`format_run_summary` makes the text from numbers and paths alone; the other functions gather them (from the
MLflow store, the catalog's datasets) for `rewardlab.hooks.RunSummaryHooks`.
"""

from __future__ import annotations

import re
import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePath
from typing import Any

# ood_eval's sets in the order of the comparison table; any other set follows in name order.
EVAL_SET_ORDER = ("test", "ood_prompt", "ood_response", "ood_both")
EVAL_ACCURACY = re.compile(r"eval\.(?P<set>.+)\.accuracy")
# Training logs `loss`, or `member<i>.loss` for each member of an ensemble.
TRAINING_LOSS = re.compile(r"(?P<member>member\d+\.)?loss")
BON_GOLD = "bon.gold"
# The policy's gold score on held-out prompts at each evaluation step of policy optimization (pipeline `rl`).
RL_GOLD = "rl.eval.gold"
# Markdown tables first, then plots, then the rest (data behind them).
_REPORT_ORDER = {".md": 0, ".png": 1}
_LABEL_WIDTH = 12


def _number(value: float) -> str:
    return f"{value:.4g}"


def eval_accuracies(metrics: Mapping[str, float]) -> dict[str, float]:
    """Accuracy on each evaluation set (`eval.<set>.accuracy`), in the comparison table's order."""
    found = {match["set"]: value for key, value in metrics.items() if (match := EVAL_ACCURACY.fullmatch(key))}
    order = {name: index for index, name in enumerate(EVAL_SET_ORDER)}
    return {name: found[name] for name in sorted(found, key=lambda name: (order.get(name, len(order)), name))}


def gold_peak(history: Sequence[tuple[int, float]]) -> tuple[int, float] | None:
    """(n, gold) where best-of-n's gold score peaks; the smallest such n on a tie. None without a history."""
    if not history:
        return None
    return max(sorted(history), key=lambda point: point[1])


def _training_line(metrics: Mapping[str, float]) -> str | None:
    parts = []
    for key in sorted(metrics):
        if match := TRAINING_LOSS.fullmatch(key):
            member = match["member"] or ""
            part = f"{member.rstrip('.') + ' ' if member else ''}loss {_number(metrics[key])}"
            if f"{member}eval_accuracy" in metrics:
                part += f" (validation accuracy {_number(metrics[f'{member}eval_accuracy'])})"
            parts.append(part)
    return ", ".join(parts) if parts else None


def _ordered_reports(reports: Sequence[str]) -> list[str]:
    def key(path: str) -> tuple[int, str]:
        return _REPORT_ORDER.get(PurePath(path).suffix, len(_REPORT_ORDER)), path

    return sorted(dict.fromkeys(reports), key=key)


def format_run_summary(
    *,
    run_id: str | None,
    metrics: Mapping[str, float],
    bon_gold: Sequence[tuple[int, float]] = (),
    rl_gold: Sequence[tuple[int, float]] = (),
    reports: Sequence[str] = (),
    mlflow_ui: str | None = None,
    run_url: str | None = None,
    runs_url: str | None = None,
) -> str:
    """The summary text: only the lines there is something for.

    `metrics` are the run's latest values by key, `bon_gold` the (n, value) history of best-of-n's gold score,
    `rl_gold` the (step, value) history of the optimized policy's gold score on held-out prompts,
    `reports` the report files and folders the run wrote, `mlflow_ui` the command that serves the MLflow UI and
    `run_url` the run's page there and `runs_url` its experiment's runs table.
    """
    lines = [f"Run finished: MLflow run {run_id}" if run_id else "Run finished (not tracked in MLflow)"]

    def row(label: str, text: str) -> None:
        head = f"{label}:" if label else ""
        lines.append(f"  {head:<{_LABEL_WIDTH}}{text}")

    if training := _training_line(metrics):
        row("Training", training)
    if accuracies := eval_accuracies(metrics):
        row("Accuracy", ", ".join(f"{name} {_number(value)}" for name, value in accuracies.items()))
    if peak := gold_peak(bon_gold):
        n, gold = peak
        last_n, last_gold = max(bon_gold)
        row("Best-of-n", f"gold peaks at {_number(gold)} with n={n} ({_number(last_gold)} at n={last_n})")
    if peak := gold_peak(rl_gold):
        step, gold = peak
        last_step, last_gold = max(rl_gold)
        row("Policy", f"gold peaks at {_number(gold)} at step {step} ({_number(last_gold)} at step {last_step})")
    for index, path in enumerate(_ordered_reports(reports)):
        row("" if index else "Reports", path)
    if mlflow_ui:
        row("MLflow UI", mlflow_ui)
        if run_url:
            row("", f"then open {run_url}")
        if runs_url:
            row("", f"or every run: {runs_url}")
    return "\n".join(lines)


# ---- gathering: the MLflow store, the catalog, the project ----------------------------------------------------

def read_run(tracking_uri: str, run_id: str) -> tuple[dict[str, float], list[tuple[int, float]], str]:
    """The run's latest metrics, its best-of-n gold history and its experiment id, from the MLflow store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    metrics = dict(run.data.metrics)
    history = [(m.step, m.value) for m in client.get_metric_history(run_id, BON_GOLD)] if BON_GOLD in metrics else []
    return metrics, history, run.info.experiment_id


def metric_history(tracking_uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    """(step, value) of every point of one metric of the run; empty when the run never logged it."""
    from mlflow.tracking import MlflowClient

    return [(m.step, m.value) for m in MlflowClient(tracking_uri=tracking_uri).get_metric_history(run_id, key)]


def dataset_path(dataset: Any) -> PurePath | None:
    """Where a file dataset saved (the version it saved, when versioned) or the folder of a partitioned one."""
    path = getattr(dataset, "last_saved_path", None) or getattr(dataset, "_filepath", None) \
        or getattr(dataset, "_path", None)
    if path is None:
        return None
    if getattr(dataset, "_version", None) is not None and hasattr(dataset, "_get_versioned_path"):
        try:
            path = dataset._get_versioned_path(dataset.resolve_save_version())
        except Exception:  # the unversioned path still says where to look
            pass
    return PurePath(str(path))


def is_report(path: PurePath) -> bool:
    """Kedro's data layers: reports (tables, plots) are in 08_reporting."""
    return "08_reporting" in path.parts


def relative_to_project(path: PurePath | str, project_path: Path) -> str:
    try:
        return Path(path).relative_to(project_path).as_posix()
    except ValueError:
        return Path(path).as_posix()


def mlflow_ui_command(tracking_uri: str, project_path: Path, host: str = "127.0.0.1", port: str | int = 5000) -> str:
    """`make mlflow-ui` when it serves this very store; the `mlflow server` command itself otherwise."""
    store = project_path / "mlflow.db"
    makefile = project_path / "Makefile"
    if tracking_uri == f"sqlite:///{store.as_posix()}" and makefile.is_file() \
            and re.search(r"^mlflow-ui:", makefile.read_text(), flags=re.MULTILINE):
        return "make mlflow-ui"
    mlflow = Path(sys.executable).parent / "mlflow"
    executable = relative_to_project(mlflow, project_path) if mlflow.exists() else "mlflow"
    return shlex.join([executable, "server", "--backend-store-uri", tracking_uri, "--host", str(host),
                       "--port", str(port), "--workers", "1"])
