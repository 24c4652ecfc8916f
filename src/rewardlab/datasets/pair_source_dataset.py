"""A Kedro dataset that reads preference pairs from any supported source into the project's pair schema.

The source is the same spec that ``rewardlab.adapters.load_pairs`` takes: a local JSONL / Parquet / CSV
file or an HF dataset (hub id or local directory), and a ``format`` naming the adapter (``pairs``,
``trl_explicit``, ``trl_implicit``, ``hh_rlhf``, ``unified_feedback``, ``skywork``). Rows that fail
validation are reported with file, row and field; with ``on_error: drop`` they are dropped and the issues
travel with the frame in ``frame.attrs["validation_issues"]`` so the ingest node can count them, together
with the source's name (its path or hub id) in ``frame.attrs["source_label"]`` for messages about the whole
source (e.g. that it holds no usable pair).

Saving is allowed only for a local file in the pair schema (the world pipeline writes its raw pairs there).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd
from kedro.io.core import AbstractDataset, DatasetError


class PairSourceDataset(AbstractDataset[pd.DataFrame, pd.DataFrame]):
    def __init__(self, source: dict[str, Any], metadata: dict[str, Any] | None = None) -> None:
        if not source.get("path") and not source.get("hub_id"):
            raise DatasetError("PairSourceDataset needs `source.path` (local) or `source.hub_id`")
        # Read everything readable and hand the problems to the ingest node, which applies `on_error`.
        self._source = {"on_error": "drop", **source}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"source": self._source}

    def _exists(self) -> bool:
        if self._source.get("path"):
            return Path(self._source["path"]).exists()
        return True  # a hub dataset is assumed to exist; loading says otherwise clearly

    def load(self) -> pd.DataFrame:
        from rewardlab.adapters import load_pairs

        if self._source.get("path") and not Path(self._source["path"]).exists():
            raise DatasetError(f"Preference data not found at '{self._source['path']}'")
        frame, issues = load_pairs(self._source)
        frame.attrs["validation_issues"] = [dataclasses.asdict(issue) for issue in issues]
        frame.attrs["source_label"] = str(self._source.get("path") or self._source.get("hub_id"))
        return frame

    def save(self, data: pd.DataFrame) -> None:
        path = self._source.get("path")
        if not path or self._source.get("format", "pairs") != "pairs":
            raise DatasetError("PairSourceDataset can only save to a local `path` in the `pairs` format")
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.partial")
        suffix = target.suffix.lower()
        if suffix == ".parquet":
            data.to_parquet(partial, index=False)
        elif suffix in (".jsonl", ".json"):
            data.to_json(partial, orient="records", lines=True, force_ascii=False)
        else:
            raise DatasetError(f"Cannot save pairs to '{path}': use .parquet or .jsonl")
        partial.replace(target)
