"""Row access shared by the evaluation-set converters (pandas rows hold numpy arrays where HF rows hold
lists), their output columns and their format error."""

from __future__ import annotations

import numpy as np
import pandas as pd

from rewardlab.schema import PAIR_COLUMNS, DataValidationError

EVAL_COLUMNS = [*PAIR_COLUMNS, "subset"]


class EvalSetFormatError(DataValidationError):
    """A row of an evaluation set does not have the fields its converter needs."""


def _records(rows) -> list[dict]:
    if isinstance(rows, pd.DataFrame):
        return rows.to_dict("records")
    if hasattr(rows, "to_list") and hasattr(rows, "column_names"):  # datasets.Dataset
        return rows.to_list()
    return [dict(r) for r in rows]


def _as_list(value) -> list:
    if isinstance(value, np.ndarray):
        return value.tolist()
    return list(value)


def _field(row: dict, name: str, set_name: str, index: int):
    if name not in row or row[name] is None:
        raise EvalSetFormatError(f"{set_name}: row {index} lacks field {name!r} (has {sorted(row)})")
    return row[name]


def _messages(value, set_name: str, index: int, field: str) -> list[dict[str, str]]:
    try:
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in _as_list(value)]
    except (KeyError, TypeError) as err:
        raise EvalSetFormatError(
            f"{set_name}: row {index} field {field!r} is not a list of role/content messages ({err})"
        ) from err


def _frame(records: list[dict], extra_columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=[*EVAL_COLUMNS, *extra_columns])
    frame["margin"] = frame["margin"].astype(np.float64)
    return frame
