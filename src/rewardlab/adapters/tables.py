"""Checks on a whole validated pair table: which rows were dropped and why, refusing a table with no usable
pair, and the seeded train/validation split that must leave enough pairs to train on."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd

from rewardlab.errors import ParameterError
from rewardlab.schema import DataValidationError, ValidationIssue

LISTED_DROPPED_ROWS = 5


def dropped_rows_by_kind(issues: Sequence[ValidationIssue]) -> dict[str, int]:
    """Rows left out per reason, most frequent first; a row with several problems counts once, under its first.

    Every issue of a drop-mode load stands for a dropped row; a row is named by its file, unit and position.
    """
    first_kind: dict[tuple[str, str, int], str] = {}
    for issue in issues:
        first_kind.setdefault((issue.file, issue.unit, issue.row), issue.kind)
    return dict(Counter(first_kind.values()).most_common())


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def require_usable_pairs(pairs: pd.DataFrame, issues: Sequence[ValidationIssue], label: str) -> None:
    """Raise DataValidationError naming ``label`` and the reasons when no pair is left (an empty source, or
    every row dropped): nothing could be trained or evaluated on, so this must not pass as an empty result."""
    if len(pairs):
        return
    if not issues:
        raise DataValidationError(f"{label}: no usable pairs: the source holds no rows")
    by_kind = dropped_rows_by_kind(issues)
    reasons = ", ".join(f"{kind}: {n}" for kind, n in by_kind.items())
    lines = [f"{label}: no usable pairs: {_plural(sum(by_kind.values()), 'row')} dropped ({reasons})"]
    lines += [f"  {issue}" for issue in issues[:LISTED_DROPPED_ROWS]]
    if len(issues) > LISTED_DROPPED_ROWS:
        lines.append(f"  ... and {len(issues) - LISTED_DROPPED_ROWS} more problem(s)")
    raise DataValidationError("\n".join(lines), issues)


def split_train_validation(pairs: pd.DataFrame, validation_size: int, min_train_pairs: int, seed: int, *,
                           size_name: str = "validation_size",
                           min_train_reason: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(train, validation): ``validation_size`` pairs held out at seeded random positions, order kept.

    Refuses (ParameterError) a split that leaves fewer than ``min_train_pairs`` training pairs, naming both
    numbers and the largest ``validation_size`` that works; ``size_name`` is the parameter's name in messages
    and ``min_train_reason`` says where the minimum comes from (e.g. "one global batch of 16 (...)").
    """
    if isinstance(validation_size, bool) or not isinstance(validation_size, (int, np.integer)) or validation_size < 0:
        raise ParameterError(f"{size_name} must be a non-negative integer, got {validation_size!r}")
    total = len(pairs)
    left = max(total - validation_size, 0)
    if left < min_train_pairs:
        reason = min_train_reason or f"the minimum of {min_train_pairs}"
        if total >= min_train_pairs:
            fix = f"set {size_name} to at most {total - min_train_pairs}"
        else:
            fix = f"even {size_name}=0 leaves too few; use more data or lower that minimum"
        raise ParameterError(f"{size_name}={validation_size} leaves {_plural(left, 'training pair')} of {total}, "
                             f"fewer than {reason}: {fix}")
    held_out = np.zeros(total, dtype=bool)
    held_out[np.random.default_rng(seed).permutation(total)[:validation_size]] = True
    return pairs[~held_out].reset_index(drop=True), pairs[held_out].reset_index(drop=True)
