"""Reading the raw rows of a source (JSONL, CSV, Parquet, a Hugging Face dataset), each with its location."""

from __future__ import annotations

import codecs
import csv
import gzip
import json
import sys
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rewardlab.schema import UNDECODABLE, DataValidationError, ValidationIssue, describe


@dataclass
class RawRecords:
    """Rows as read from a source, with where each came from (``unit`` "line" is 1-based, "row" 0-based)."""

    label: str
    records: list[dict[str, Any]]
    locations: list[int]
    unit: str
    issues: list[ValidationIssue] = field(default_factory=list)


def read_jsonl(path: str | Path, limit: int | None = None, label: str | None = None) -> RawRecords:
    """JSON lines (optionally gzipped); a line that is not a JSON object becomes an issue, blank lines are skipped.

    A UTF-8 byte-order mark at the start of the file and CRLF line ends (both common from Windows editors) are
    accepted.
    """
    path = Path(path)
    raw = RawRecords(label or str(path), [], [], "line")
    line_no = 0
    try:
        # Binary lines, decoded one by one, so a bad byte spoils only its own line.
        with (gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb")) as handle:
            for line_no, line in enumerate(handle, start=1):
                if limit is not None and len(raw.records) + len(raw.issues) >= limit:
                    break
                if line_no == 1 and line.startswith(codecs.BOM_UTF8):
                    line = line[len(codecs.BOM_UTF8):]
                if not line.strip():
                    continue
                try:
                    record = json.loads(line.decode("utf-8"))
                    problem = None if isinstance(record, dict) else f"expected a JSON object, got {describe(record)}"
                except (UnicodeDecodeError, json.JSONDecodeError) as error:
                    problem = f"not valid JSON ({error})"
                if problem:
                    raw.issues.append(ValidationIssue(raw.label, line_no, "<line>", problem, UNDECODABLE, "line"))
                else:
                    raw.records.append(record)
                    raw.locations.append(line_no)
    except (OSError, EOFError, zlib.error) as error:
        raise DataValidationError(f"{raw.label}: cannot read the file after line {line_no}: {error}") from error
    return raw


def read_csv(path: str | Path, limit: int | None = None, label: str | None = None) -> RawRecords:
    """CSV with a header row (optionally gzipped); a record's location is the line where it starts.

    Empty cells are empty strings (an empty id or margin means "not given"); cells missing at the end of a
    short record are missing fields.
    """
    path = Path(path)
    raw = RawRecords(label or str(path), [], [], "line")
    # Responses are often longer than the csv module's default 128 KiB field limit.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next((row for row in reader if row), None)
            if header is None:
                return raw
            while limit is None or len(raw.records) < limit:
                start_line = reader.line_num + 1
                cells = next(reader, None)
                if cells is None:
                    break
                if not cells:
                    continue
                raw.records.append(dict(zip(header, cells)))
                raw.locations.append(start_line)
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as error:
        raise DataValidationError(f"{raw.label}: cannot read the file: {error}") from error
    return raw


def read_parquet(path: str | Path, limit: int | None = None, label: str | None = None) -> RawRecords:
    """Parquet file; rows are named by 0-based index."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    if limit is not None:
        table = table.slice(0, limit)
    records = table.to_pylist()
    return RawRecords(label or str(path), records, list(range(len(records))), "row")


def _is_saved_dataset(directory: Path) -> bool:
    """True for a directory written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``."""
    return (directory / "state.json").exists() or (directory / "dataset_dict.json").exists()


def _pick_split(dataset: Any, split: str | None, label: str) -> tuple[Any, str | None]:
    import datasets

    if not isinstance(dataset, (datasets.DatasetDict, datasets.IterableDatasetDict)):
        return dataset, split
    if split is None:
        names = list(dataset)
        split = "train" if "train" in names else (names[0] if len(names) == 1 else None)
        if split is None:
            raise ValueError(f"{label}: several splits ({', '.join(names)}); name one with 'split'")
    if split not in dataset:
        raise ValueError(f"{label}: no split {split!r}; available: {', '.join(dataset)}")
    return dataset[split], split


def read_hf_dataset(path_or_id: str, split: str | None = None, name: str | None = None, data_files: Any = None,
                    limit: int | None = None, cache_dir: str | None = None, label: str | None = None) -> RawRecords:
    """A Hugging Face dataset: ``load_from_disk`` for a ``save_to_disk`` directory, else ``load_dataset``.

    ``load_dataset`` takes a hub id, a local directory of data files, or a builder name ("json", "parquet",
    ...) with ``data_files``. Rows are named by 0-based index within the split.
    """
    import datasets

    local = Path(path_or_id)
    if local.is_dir() and _is_saved_dataset(local):
        dataset = datasets.load_from_disk(str(local))
    else:
        dataset = datasets.load_dataset(path_or_id, name, split=split, data_files=data_files, cache_dir=cache_dir)
    dataset, split = _pick_split(dataset, split, path_or_id)
    if limit is not None:
        dataset = dataset.select(range(min(limit, len(dataset))))
    records = dataset.to_list()
    label = label or path_or_id
    return RawRecords(f"{label}:{split}" if split else label, records, list(range(len(records))), "row")


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return name[:-3].rsplit(".", 1)[-1] if name.endswith(".gz") else path.suffix.lower().lstrip(".")


def read_records(spec: Mapping[str, Any]) -> RawRecords:
    """Read the rows a (checked) spec names, without converting them."""
    limit, split, name = spec.get("limit"), spec.get("split"), spec.get("subset") or spec.get("name")
    hf_options = {"data_files": spec.get("data_files"), "limit": limit, "cache_dir": spec.get("cache_dir")}
    if spec.get("hub_id") is not None:
        return read_hf_dataset(str(spec["hub_id"]), split, name, **hf_options)
    path = Path(spec["path"])
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file or directory")
    if path.is_dir():
        return read_hf_dataset(str(path), split, name, **hf_options)
    suffix = _suffix(path)
    if suffix == "jsonl":
        return read_jsonl(path, limit, str(spec["path"]))
    if suffix == "csv":
        return read_csv(path, limit, str(spec["path"]))
    if suffix in ("parquet", "pq"):
        return read_parquet(path, limit, str(spec["path"]))
    if suffix == "json":
        return read_hf_dataset("json", split, None, **{**hf_options, "data_files": str(path)},
                               label=str(spec["path"]))
    raise ValueError(f"{path}: unsupported file type; expected .jsonl[.gz], .csv[.gz], .parquet, .json or a "
                     f"dataset directory")
