"""Ingestion nodes: validate, deduplicate and split the raw training pairs."""

from __future__ import annotations

from typing import Any

import pandas as pd

from rewardlab.adapters.tables import dropped_rows_by_kind, require_usable_pairs, split_train_validation
from rewardlab.config import GrmTrainConfig, IngestConfig
from rewardlab.pipelines.tracking import metrics_for_mlflow
from rewardlab.schema import ValidationIssue, raise_on_fatal_issues, summarize_issues, validate_pairs

LISTED_ISSUES = 50


def ingest_pairs(
    raw_pairs: pd.DataFrame, params: dict[str, Any], grm_params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], dict[str, Any]]:
    """Validate the raw pairs (drop-and-count, or fail naming file, row and field), then hold out a seeded
    validation split that leaves at least one global training batch (from `grm_params`).

    Problems found while reading (undecodable lines, ...) and the source's name arrive in the frame's attrs.
    A source with no usable pair is refused before anything is written, as is an `on_error` other than
    drop/fail.
    """
    cfg = IngestConfig.from_dict(params, "ingest")
    label = str(raw_pairs.attrs.get("source_label", "raw_train_pairs"))
    loader_issues = [ValidationIssue(**issue) for issue in raw_pairs.attrs.get("validation_issues", [])]
    clean, issues = validate_pairs(raw_pairs, file="raw_train_pairs", on_error="drop")
    all_issues = loader_issues + issues
    if cfg.on_error == "fail":
        raise_on_fatal_issues(all_issues)
    require_usable_pairs(clean, all_issues, label)
    if cfg.limit:
        clean = clean.iloc[: cfg.limit]
    clean = clean.reset_index(drop=True)

    batch, batch_terms = _global_batch_size(grm_params)
    train, validation = split_train_validation(
        clean, cfg.validation_size, batch, cfg.seed,
        size_name="ingest.validation_size", min_train_reason=f"one global batch of {batch} ({batch_terms})",
    )

    dropped_by_kind = dropped_rows_by_kind(all_issues)
    rows_dropped = sum(dropped_by_kind.values())
    report = {
        "source": label,
        "rows_kept": int(len(clean)),
        "rows_dropped": rows_dropped,
        "train_pairs": int(len(train)),
        "validation_pairs": int(len(validation)),
        "rows_dropped_by_kind": dropped_by_kind,
        "issues": len(all_issues),
        "issues_by_kind": summarize_issues(all_issues),
        "first_issues": [str(issue) for issue in all_issues[:LISTED_ISSUES]],
    }
    metrics = {"rows_kept": len(clean), "rows_dropped": rows_dropped, "train_pairs": len(train),
               "validation_pairs": len(validation)}
    metrics |= {f"dropped.{kind}": n for kind, n in dropped_by_kind.items()}
    return train, validation, report, metrics_for_mlflow(metrics)


def _global_batch_size(grm_params: dict[str, Any]) -> tuple[int, str]:
    """Pairs in one optimizer step of the configured training run, and the settings that make that number."""
    cfg = GrmTrainConfig.from_dict(grm_params, "grm_train").train_config()
    terms = (f"grm_train.train.per_device_batch_size {cfg.per_device_batch_size} x num_processes "
             f"{cfg.num_processes} x gradient_accumulation_steps {cfg.gradient_accumulation_steps}")
    return cfg.global_batch_size, terms
