"""Loading a pair table from a data spec: check the spec, read its rows, convert and validate them."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from rewardlab.adapters.formats import ADAPTERS, FORMATS, pairs_from_records
from rewardlab.adapters.readers import read_records
from rewardlab.schema import ValidationIssue, check_on_error

SPEC_KEYS = frozenset({"path", "hub_id", "format", "split", "subset", "name", "on_error", "limit", "source",
                       "data_files", "cache_dir"})
logger = logging.getLogger(__name__)


def check_spec(spec: Mapping[str, Any], strict: bool = False) -> dict[str, Any]:
    """The spec's loading keys with defaults filled in; inconsistent values raise ValueError.

    Other keys are left out (specs often carry keys for their callers, e.g. an evaluation set's ``kind``);
    they are logged so a misspelt key does not pass unnoticed, and refused when ``strict``.
    """
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown and strict:
        raise ValueError(f"unknown data spec key(s) {unknown}; allowed: {sorted(SPEC_KEYS)}")
    if unknown:
        logger.warning("data spec keys %s are not loading options and are ignored", unknown)
    checked = {"format": "pairs", "on_error": "fail", **{key: spec[key] for key in SPEC_KEYS if key in spec}}
    if (checked.get("path") is None) == (checked.get("hub_id") is None):
        raise ValueError("a data spec needs exactly one of 'path' and 'hub_id'")
    if checked["format"] not in ADAPTERS:
        raise ValueError(f"unknown format {checked['format']!r}; expected one of {', '.join(FORMATS)}")
    check_on_error(checked["on_error"])
    if checked.get("subset") and checked.get("name") and checked["subset"] != checked["name"]:
        raise ValueError("'subset' and 'name' both given and different")
    limit = checked.get("limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"limit must be a non-negative integer, got {limit!r}")
    return checked


def default_source(spec: Mapping[str, Any]) -> str:
    """The dataset's name: the hub id, or the file name without its extensions."""
    if spec.get("hub_id") is not None:
        return str(spec["hub_id"])
    return re.sub(r"(\.(jsonl|json|csv|parquet|pq))?(\.gz)?$", "", Path(spec["path"]).name, flags=re.IGNORECASE)


def load_pairs(spec: Mapping[str, Any], strict: bool = False) -> tuple[pd.DataFrame, list[ValidationIssue]]:
    """Load a pair table from a spec and return it with every issue found.

    Spec keys: ``path`` (file or directory) or ``hub_id``; ``format`` (see :data:`FORMATS`, default "pairs");
    ``split``; ``subset``/``name`` (dataset configuration); ``data_files`` and ``cache_dir`` (passed to
    ``datasets.load_dataset``); ``on_error`` ("fail" raises :class:`DataValidationError` on any defect,
    "drop" leaves offending rows out; ties are dropped either way); ``limit`` (rows read); ``source`` (fills
    the source column where rows have none; default: the dataset's name). Other keys are ignored (with a
    warning), or refused when ``strict``.
    """
    checked = check_spec(spec, strict)
    raw = read_records(checked)
    source = checked.get("source") or default_source(checked)
    return pairs_from_records(raw.records, checked["format"], raw.label, checked["on_error"],
                              locations=raw.locations, unit=raw.unit, source=source, prior_issues=raw.issues)
