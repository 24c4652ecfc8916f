"""Loading an evaluation set from its spec: local files and directories first, else the hub."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from rewardlab.adapters import load_pairs, read_hf_dataset, read_records
from rewardlab.evalsets.hhh import HHH_CONFIGS, HHH_HUB_ID, hhh_to_pairs
from rewardlab.evalsets.mt_bench import MT_BENCH_HUB_ID, MT_BENCH_SPLITS, mt_bench_to_pairs
from rewardlab.evalsets.reward_bench import REWARD_BENCH_HUB_ID, REWARD_BENCH_SPLIT, reward_bench_to_pairs
from rewardlab.evalsets.reward_bench_2 import (REWARD_BENCH_2_HUB_ID, REWARD_BENCH_2_SPLIT,
                                               reward_bench_2_to_responses)
from rewardlab.evalsets.rm_bench import RM_BENCH_HUB_ID, RM_BENCH_SPLIT, rm_bench_to_responses
from rewardlab.evalsets.rows import EVAL_COLUMNS, EvalSetFormatError
from rewardlab.schema import DataValidationError

logger = logging.getLogger(__name__)

_TABLE_SUFFIXES = (".parquet", ".jsonl", ".jsonl.gz", ".json", ".json.gz", ".csv", ".csv.gz")
EVAL_KINDS = ("pairs", "hhh", "mt_bench", "reward_bench", "reward_bench_2", "rm_bench", "world")
# Kinds read as one row per response (benchmarks that compare more than two responses per prompt):
# kind -> (default split, converter).
_RESPONSE_KINDS = {
    "reward_bench_2": (REWARD_BENCH_2_SPLIT, reward_bench_2_to_responses),
    "rm_bench": (RM_BENCH_SPLIT, rm_bench_to_responses),
}
_DEFAULT_HUB = {"hhh": HHH_HUB_ID, "mt_bench": MT_BENCH_HUB_ID, "reward_bench": REWARD_BENCH_HUB_ID,
                "reward_bench_2": REWARD_BENCH_2_HUB_ID, "rm_bench": RM_BENCH_HUB_ID}
# Spec keys passed through to rewardlab.adapters.load_pairs for kind "pairs" ("config" becomes its "name").
_ADAPTER_KEYS = ("path", "hub_id", "format", "split", "on_error", "limit", "source", "data_files", "cache_dir")


class EvalSetNotFoundError(FileNotFoundError):
    """A configured evaluation set is neither on disk nor loadable from the hub."""


def _part_path(base: Path, part: str) -> Path | None:
    for candidate in (base / part, *(base / f"{part}{suffix}" for suffix in _TABLE_SUFFIXES)):
        if candidate.exists():
            return candidate
    return None


def _saved_split(location: Path, split: str | None) -> str | None:
    """The split to read from a save_to_disk DatasetDict: the one asked for, else its only one."""
    names = json.loads((location / "dataset_dict.json").read_text())["splits"]
    if split in names:
        return split
    if len(names) == 1:
        return names[0]
    raise EvalSetNotFoundError(f"{location}: no split {split!r} (has {names})")


def _read_local(location: Path, split: str | None = None) -> pd.DataFrame:
    """One table from a file (parquet/jsonl/json/csv), a save_to_disk directory or a dataset directory.

    Files and directories are read by the ingestion adapters' readers, so both accept the same inputs (a
    byte-order mark, CRLF line ends); a line that is not a JSON object is an error here. A file's table has
    no split, so ``split`` only chooses among a directory's splits.
    """
    if location.is_file():
        if not location.name.lower().endswith(_TABLE_SUFFIXES):
            raise EvalSetFormatError(f"{location}: unsupported file type (use one of {_TABLE_SUFFIXES})")
        raw = read_records({"path": str(location)})
    elif (location / "dataset_dict.json").exists():
        raw = read_hf_dataset(str(location), _saved_split(location, split))
    elif (location / "state.json").exists():
        raw = read_hf_dataset(str(location))
    else:
        raw = read_hf_dataset(str(location), split or "train")
    if raw.issues:
        raise DataValidationError.from_issues(raw.issues)
    return pd.DataFrame.from_records(raw.records)


def _read_hub(hub_id: str, config: str | None, split: str) -> pd.DataFrame:
    import datasets

    return datasets.load_dataset(hub_id, name=config, split=split).to_pandas()


def _as_names(value, default: Iterable[str]) -> list[str]:
    if value is None:
        return list(default)
    return [value] if isinstance(value, str) else list(value)


def _load_parts(
    spec: Mapping[str, Any], parts: list[str], config_parts: bool, split: str | None
) -> dict[str, pd.DataFrame]:
    """Tables keyed by part (an HHH config or an MT-Bench split), local first, else from the hub.

    Locally, ``path/<part>`` (a directory or a table file) is read per part; otherwise ``path`` is a
    DatasetDict keyed by part (splits) or one table holding every part, returned under the key ``""``.
    """
    if spec.get("path"):
        base = Path(spec["path"])
        if not base.exists():
            raise EvalSetNotFoundError(f"no file or directory at {base}")
        if base.is_dir():
            located = {part: _part_path(base, part) for part in parts}
            if any(located.values()):
                absent = [part for part, p in located.items() if p is None]
                if absent:
                    raise EvalSetNotFoundError(f"{base} lacks part(s) {absent}")
                return {part: _read_local(p, split if config_parts else part) for part, p in located.items()}
            if not config_parts and (base / "dataset_dict.json").exists():
                return {part: _read_local(base, part) for part in parts}
        return {"": _read_local(base, split)}
    hub_id = spec["hub_id"]
    if config_parts:
        return {part: _read_hub(hub_id, part, split or "test") for part in parts}
    return {part: _read_hub(hub_id, None, part) for part in parts}


def _with_subset(frame: pd.DataFrame, default: str) -> pd.DataFrame:
    frame = frame.copy()
    if "subset" not in frame.columns:
        frame["subset"] = default
    ordered = [c for c in EVAL_COLUMNS if c in frame.columns]
    return frame[ordered + [c for c in frame.columns if c not in ordered]]


def _load(spec: Mapping[str, Any], name: str, kind: str) -> tuple[pd.DataFrame, dict]:
    info: dict[str, Any] = {"n_ties": 0, "ties_kept": bool(spec.get("keep_ties", False))}
    if kind == "hhh":
        configs = _as_names(spec.get("configs"), HHH_CONFIGS)
        tables = _load_parts(spec, configs, config_parts=True, split=spec.get("split"))
        frame = pd.concat(
            [hhh_to_pairs(t, subset=part or None) for part, t in tables.items()], ignore_index=True
        )
    elif kind == "mt_bench":
        splits = _as_names(spec.get("split"), MT_BENCH_SPLITS)
        tables = _load_parts(spec, splits, config_parts=False, split=splits[0])
        frames = []
        for part, table in tables.items():
            converted, n_ties = mt_bench_to_pairs(
                table, split=part or splits[0], keep_ties=info["ties_kept"], turns=spec.get("turns") or (1, 2)
            )
            frames.append(converted)
            info["n_ties"] += n_ties
        frame = pd.concat(frames, ignore_index=True)
        if info["n_ties"] and not info["ties_kept"]:
            logger.info("%s: left out %d tied judgments", name, info["n_ties"])
    elif kind == "reward_bench":
        split = spec.get("split") or REWARD_BENCH_SPLIT
        table = _read_local(Path(spec["path"]), split) if spec.get("path") else _read_hub(spec["hub_id"], None, split)
        frame = reward_bench_to_pairs(table, subsets=spec.get("subsets"))
    elif kind in _RESPONSE_KINDS:
        default_split, convert = _RESPONSE_KINDS[kind]
        split = spec.get("split") or default_split
        table = _read_local(Path(spec["path"]), split) if spec.get("path") else _read_hub(spec["hub_id"], None, split)
        frame = convert(table, spec.get("subsets"))
    elif kind == "world":
        frame = _with_subset(_read_local(Path(spec["path"]), spec.get("split")), name)
    else:  # "pairs": any file or dataset the ingestion adapters read
        # Here "name" is the evaluation set's name; the adapters' "name" is a dataset configuration.
        # Public test sets carry a few defective rows (e.g. empty responses); an evaluation leaves them out
        # and reports how many, unless the spec asks for on_error: fail.
        adapter_spec = {"on_error": "drop", **{k: spec[k] for k in _ADAPTER_KEYS if spec.get(k) is not None}}
        if spec.get("config") is not None:
            adapter_spec["name"] = spec["config"]
        frame, issues = load_pairs(adapter_spec)
        info["dropped_rows"] = len({issue.row for issue in issues})
        if issues:
            logger.warning("%s: left out %d row(s) with data problems, e.g. %s", name, info["dropped_rows"], issues[0])
        frame = _with_subset(frame, name)
    return frame.reset_index(drop=True), info


def load_eval_set(spec: Mapping[str, Any]) -> tuple[pd.DataFrame, dict] | None:
    """Load one evaluation set described by ``spec`` into the pair schema plus ``subset``.

    ``spec`` keys: ``name``; ``kind`` (pairs | hhh | mt_bench | reward_bench | reward_bench_2 | rm_bench |
    world); ``path`` (local file or directory, tried first) or ``hub_id`` (default: the set's hub id);
    ``split`` (str, or a list for MT-Bench); ``configs`` (HHH) / ``subsets`` (RewardBench's subsets,
    RewardBench 2's sections, RM-Bench's domains); ``keep_ties`` and ``turns`` (MT-Bench);
    ``optional``. Kind "pairs" goes through ``rewardlab.adapters.load_pairs`` with the keys ``format``,
    ``on_error`` (default "drop": defective rows are left out, counted in ``info["dropped_rows"]``),
    ``limit``, ``source``, ``data_files``, ``cache_dir`` and ``config`` (a dataset configuration) passed
    on. Locally, HHH reads ``path/<config>`` and MT-Bench ``path/<split>`` (a save_to_disk directory or a
    table file) when present, else ``path`` as one table (a DatasetDict keyed
    by split for MT-Bench). Every set gets a ``subset`` column (the set's name where it has no subsets).
    Returns ``(pairs, info)`` where info holds name, kind, location, n_pairs, n_ties, ties_kept and
    ``subsets`` (pairs per subset). RewardBench 2 and RM-Bench, which compare more than two responses per
    prompt, come as one row per response instead (``rows.RESPONSE_COLUMNS``); their info holds n_rows and
    n_responses in place of n_pairs, and ``subsets`` counts prompts. A set that cannot be found raises
    :class:`EvalSetNotFoundError` naming it, unless ``optional`` is true: then a warning is logged and None
    returned.
    """
    name = str(spec.get("name") or spec.get("kind") or "eval_set")
    kind = spec.get("kind", "pairs")
    if kind not in EVAL_KINDS:
        raise ValueError(f"evaluation set {name!r}: unknown kind {kind!r} (expected one of {EVAL_KINDS})")
    spec = dict(spec)
    if kind == "world" and not spec.get("path"):
        raise ValueError(f"evaluation set {name!r} (world) needs a 'path'")
    if not spec.get("path") and not spec.get("hub_id"):
        if kind not in _DEFAULT_HUB:
            raise ValueError(f"evaluation set {name!r} ({kind}) needs a 'path' or a 'hub_id'")
        spec["hub_id"] = _DEFAULT_HUB[kind]
    location = str(spec.get("path") or spec.get("hub_id"))
    try:
        if spec.get("path") and not Path(spec["path"]).exists():
            raise EvalSetNotFoundError(f"no file or directory at {spec['path']}")
        frame, info = _load(spec, name, kind)
    except (FileNotFoundError, ConnectionError) as err:
        message = f"evaluation set {name!r} ({kind}) not found at {location}: {err}"
        if spec.get("optional", False):
            logger.warning("%s; skipped because it is optional", message)
            return None
        raise EvalSetNotFoundError(message + " (give a local 'path', or set 'optional: true')") from err
    info.update(name=name, kind=kind, location=location)
    if kind in _RESPONSE_KINDS:
        prompts = frame.drop_duplicates("row")
        info.update(n_rows=int(len(prompts)), n_responses=int(len(frame)))
    else:
        prompts = frame
        info.update(n_pairs=int(len(frame)))
    info["subsets"] = {str(k): int(v) for k, v in prompts["subset"].value_counts(sort=False).sort_index().items()}
    return frame, info
