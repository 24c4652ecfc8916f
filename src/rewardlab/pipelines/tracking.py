"""Small helpers the pipelines share: MLflow logging that is a no-op without a run, tables, devices; and how
a run shows in the MLflow UI: its experiment's kind, its name, the pair sets it trains and is evaluated on."""

from __future__ import annotations

import hashlib
import json
import math
import re
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
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


# ---- how a run shows in the MLflow UI ------------------------------------------------------------------------

# The experiment's kind for MLflow: model training (runs, metrics, datasets, models), not GenAI traces.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
# Runs of pipelines that read these parameter blocks train or evaluate one reward model: named by its label.
LABELLED_BLOCKS = ("grm_train", "ood_eval", "bon")
TRAINING, EVALUATION = "training", "evaluation"
TRAINING_PAIRS = "noisy_train_pairs"
EXTRA_EVAL_SETS = "extra_eval_sets"  # the evaluation sets beside the world's, by name
_EVALUATION_ENTRIES = re.compile(r"^(validation_pairs|world_test_pairs|world_ood_\w+_pairs)$")
# As MLflow's own digest of a pandas frame: its first rows, its length and its columns; 8 hex digits.
DIGEST_ROWS = 10_000
# Rows the column types are read from: every row of a pair set has the same types, and reading them all
# from chat messages takes seconds.
SCHEMA_ROWS = 100


def add_missing_experiment_tags(client: Any, experiment_name: str, tags: Mapping[str, Any] | None) -> dict[str, str]:
    """Sets on the experiment each of `tags` it lacks (one made before they were configured); a tag it has,
    e.g. a kind chosen in the UI, stays. Returns the tags set."""
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None or not tags:
        return {}
    missing = {str(key): str(value) for key, value in tags.items() if key not in experiment.tags}
    for key, value in missing.items():
        client.set_experiment_tag(experiment.experiment_id, key, value)
    return missing


def run_name(parameters: dict[str, Any], parameter_blocks: Iterable[str]) -> str | None:
    """The run's label (`rewardlab.run_identity`) when its pipelines read a block of LABELLED_BLOCKS; None
    for the others (world, ingest), which keep their pipeline's name."""
    if not set(parameter_blocks) & set(LABELLED_BLOCKS):
        return None
    from rewardlab.run_identity import run_identity

    return run_identity(parameters).label


def dataset_context(dataset_name: str) -> str | None:
    """MLflow's context of a catalog entry read as a run's input: `training`, `evaluation`, or None (not logged)."""
    if dataset_name == TRAINING_PAIRS:
        return TRAINING
    if dataset_name == EXTRA_EVAL_SETS or _EVALUATION_ENTRIES.match(dataset_name):
        return EVALUATION
    return None


def dataset_location(dataset: Any) -> str | None:
    """The file a catalog dataset loads: the version it loads when versioned."""
    try:
        return str(dataset._get_load_path())  # Kedro's versioned (and plain file) datasets
    except Exception:  # not versioned, or a dataset without a load path
        path = getattr(dataset, "_filepath", None)
        return str(path) if path is not None else None


def pairs_digest(frame) -> str:
    """A digest of every column, chat messages included. MLflow's own pandas digest leaves out the columns
    that hold lists, so conversational sets that differ only in their messages (label noise swaps chosen and
    rejected) would share one."""
    import pandas as pd

    head = frame.head(DIGEST_ROWS)
    hashable = head.apply(lambda column: column.map(_cell_text) if column.dtype == object else column)
    md5 = hashlib.md5(pd.util.hash_pandas_object(hashable, index=False).to_numpy().tobytes())
    md5.update(json.dumps([len(frame), [str(column) for column in frame.columns]]).encode())
    return md5.hexdigest()[:8]


def pairs_dataset(frame, name: str, location: str | None = None):
    """An MLflow dataset of a pair frame: `name`, its file (or hub id) as source, `pairs_digest`, the column
    types of its first SCHEMA_ROWS rows and its row count."""
    import mlflow
    from mlflow.models import infer_signature

    dataset = mlflow.data.from_pandas(frame, source=dataset_source(location) if location else None, name=name,
                                      digest=pairs_digest(frame))
    try:
        schema = infer_signature(frame.head(SCHEMA_ROWS)).inputs
    except Exception:  # a set whose types MLflow cannot read is logged without them
        schema = None
    # `schema` is a functools.cached_property: this value stands for MLflow's reading of every row.
    vars(dataset)["schema"] = schema
    return dataset


def dataset_source(location: str):
    """A local file or folder (absolute), else a dataset on the hub."""
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

    path = Path(location)
    if not path.exists():
        return HuggingFaceDatasetSource(path=location)
    with warnings.catch_warnings():
        # MLflow registers its local-file source twice (paths and file:// URIs) and warns that both match.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple")
        return resolve_dataset_source(str(path.resolve()))


def log_pairs_input(frame, name: str, context: str, location: str | None = None) -> None:
    """Logs a pair set as an input of the active MLflow run (none: nothing), with its context."""
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.log_input(pairs_dataset(frame, name, location), context=context)


def _cell_text(value: Any) -> Any:
    if isinstance(value, str) or value is None:
        return value
    return json.dumps(_plain(value), sort_keys=True, ensure_ascii=False, default=str)


def _plain(value: Any) -> Any:
    """Chat messages as Parquet gives them back (numpy arrays of dicts) as plain lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value
