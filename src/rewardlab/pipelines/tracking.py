"""Small helpers the pipelines share: MLflow logging that is a no-op without a run, tables, devices."""

from __future__ import annotations

import math
from typing import Any


def metrics_for_mlflow(values: dict[str, Any], step: int = 0) -> dict[str, dict[str, float]]:
    """Shape a flat dict of numbers the way kedro-mlflow's metrics datasets take them (finite numbers only)."""
    shaped = {}
    for key, value in values.items():
        try:
            number = float(value)
        except (TypeError, ValueError):
            continue
        if math.isfinite(number):
            shaped[key.replace("/", ".").replace(" ", "_")] = {"value": number, "step": step}
    return shaped


def log_step_metrics(metrics: dict[str, float], step: int) -> None:
    """Per-step training metrics go straight to the active MLflow run, when there is one."""
    import mlflow

    if mlflow.active_run() is None:
        return
    finite = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    if finite:
        mlflow.log_metrics(finite, step=step)


def set_run_tags(tags: dict[str, Any]) -> None:
    import mlflow

    if mlflow.active_run() is not None:
        mlflow.set_tags({k: str(v) for k, v in tags.items()})


def markdown_table(frame) -> str:
    """A plain Markdown table (no extra dependency); floats to 4 significant digits."""
    def cell(value):
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "---|" * len(frame.columns)
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows]) + "\n"


def to_accelerator(model):
    """Scoring and sampling run on the GPU when there is one. Dtypes stay as saved (a bf16 checkpoint loads
    as bf16) so the reward head keeps its float32 weights."""
    import torch

    return model.to("cuda") if torch.cuda.is_available() else model
