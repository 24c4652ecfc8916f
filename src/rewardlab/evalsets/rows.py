"""Row access shared by the evaluation-set converters (pandas rows hold numpy arrays where HF rows hold
lists), their output columns and their format error.

Most sets convert to pairs (:data:`EVAL_COLUMNS`). Benchmarks that rank more than two responses per prompt
(RewardBench 2, RM-Bench) convert to one row per response instead (:data:`RESPONSE_COLUMNS`): every response
is scored once, and the benchmark's own rule then compares the responses of each prompt.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from rewardlab.schema import PAIR_COLUMNS, DataValidationError

EVAL_COLUMNS = [*PAIR_COLUMNS, "subset"]
# `row` numbers the benchmark's rows (the group whose responses are compared), `row_id` is the row's own id,
# `position` the response's place in the row (chosen first), `benchmark` the kind whose scoring applies.
RESPONSE_COLUMNS = ["id", "row", "row_id", "prompt", "response", "is_correct", "position", "subset", "source",
                    "benchmark"]


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


def _responses(row: dict, name: str, set_name: str, index: int) -> list[str]:
    """A row's list of response strings (the hub stores them as a sequence of strings)."""
    value = _field(row, name, set_name, index)
    if isinstance(value, str):
        raise EvalSetFormatError(f"{set_name}: row {index} field {name!r} must be a list of responses, got a string")
    try:
        responses = _as_list(value)
    except TypeError as err:
        raise EvalSetFormatError(f"{set_name}: row {index} field {name!r} is not a list of responses ({err})") from err
    if not responses or any(not isinstance(r, str) for r in responses):
        raise EvalSetFormatError(f"{set_name}: row {index} field {name!r} must be a non-empty list of strings")
    return responses


def _response_frame(records: list[dict], extra_columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=[*RESPONSE_COLUMNS, *extra_columns])
    return frame.astype({"row": np.int64, "position": np.int64, "is_correct": bool})


def _frame(records: list[dict], extra_columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(records, columns=[*EVAL_COLUMNS, *extra_columns])
    frame["margin"] = frame["margin"].astype(np.float64)
    return frame
