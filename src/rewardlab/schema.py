"""The preference-pair schema: validation, stable ids and rendering of conversational rows.

A pair table has the columns of :data:`PAIR_COLUMNS`. It is either *plain* (prompt, chosen and rejected are
strings; the prompt may be empty) or *conversational* (the prompt is a list of ``{"role", "content"}``
messages and chosen/rejected are lists of assistant messages). Every loader ends in :func:`validate_records`,
so every table that leaves ingestion has unique ids, non-empty distinct responses and a float margin.

Problems are reported as :class:`ValidationIssue` objects naming the file, the row and the field. Rows read
from line-oriented text files (JSONL, CSV) are identified by their 1-based line number; everything else
(in-memory tables, Parquet, Hugging Face datasets) by the 0-based row index.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from rewardlab.errors import ExpectedError

PAIR_COLUMNS = ["id", "prompt", "chosen", "rejected", "margin", "source"]
TEXT_FIELDS = ("prompt", "chosen", "rejected")

# Problem kinds, as counted by summarize_issues.
MISSING = "missing"  # field absent or null
EMPTY = "empty"  # chosen/rejected empty or whitespace only
NOT_TEXT = "not_text"  # number/dict/... where text or messages are expected, malformed message
BAD_ROLE = "bad_role"  # a non-assistant message among chosen/rejected
NO_ASSISTANT_TURN = "no_assistant_turn"  # chosen/rejected messages without any assistant message
PROMPT_MISMATCH = "prompt_mismatch"  # chosen and rejected conversations that differ before a response
MIXED_FORMAT = "mixed_format"  # plain and conversational fields mixed in a row or a table
NOT_NUMBER = "not_number"  # margin or rating that is not a finite number
IDENTICAL = "identical"  # chosen == rejected
DUPLICATE_PAIR = "duplicate_pair"  # same prompt+chosen+rejected as an earlier row
DUPLICATE_ID = "duplicate_id"  # same id as an earlier row
UNDECODABLE = "undecodable"  # a file line that is not a JSON object
NO_SHARED_PROMPT = "no_shared_prompt"  # dialogues without a common prefix to use as the prompt
TIE = "tie"  # equally rated responses: no preference to learn from
ISSUE_KINDS = (MISSING, EMPTY, NOT_TEXT, BAD_ROLE, NO_ASSISTANT_TURN, PROMPT_MISMATCH, MIXED_FORMAT, NOT_NUMBER,
               IDENTICAL, DUPLICATE_PAIR, DUPLICATE_ID, UNDECODABLE, NO_SHARED_PROMPT, TIE)
# Ties are an expected property of rated data, not a defect: they are dropped even when on_error="fail".
EXPECTED_DROP_KINDS = frozenset({TIE})

MAX_LISTED_ISSUES = 20
ROLE_NAMES = {"user": "Human", "assistant": "Assistant", "system": "System"}
ASSISTANT_MARKER = "\n\nAssistant:"


@dataclass(frozen=True)
class ValidationIssue:
    """One problem with one row. ``unit`` says how ``row`` counts: "line" (1-based) or "row" (0-based)."""

    file: str
    row: int
    field: str
    problem: str
    kind: str = "invalid"
    unit: str = "row"

    def __str__(self) -> str:
        return f"{self.file}, {self.unit} {self.row}, field '{self.field}': {self.problem}"


class DataValidationError(ExpectedError, ValueError):
    """Bad input data. ``issues`` holds every problem found (the message lists the first ones)."""

    def __init__(self, message: str, issues: Sequence[ValidationIssue] = ()):
        super().__init__(message)
        self.issues = list(issues)

    @classmethod
    def from_issues(cls, issues: Sequence[ValidationIssue]) -> DataValidationError:
        return cls(format_issues(issues), issues)


class RowProblem(ValueError):
    """A problem found in one row before its location is known; :meth:`at` places it."""

    def __init__(self, field: str, kind: str, problem: str):
        super().__init__(f"field '{field}': {problem}")
        self.field, self.kind, self.problem = field, kind, problem

    def at(self, file: str, row: int, unit: str = "row") -> ValidationIssue:
        return ValidationIssue(file, row, self.field, self.problem, self.kind, unit)


def summarize_issues(issues: Sequence[ValidationIssue]) -> dict[str, int]:
    """Number of issues per problem kind, most frequent first."""
    return dict(Counter(issue.kind for issue in issues).most_common())


def format_issues(issues: Sequence[ValidationIssue], limit: int = MAX_LISTED_ISSUES) -> str:
    """A readable report: total count, count per kind and the first ``limit`` issues."""
    counts = ", ".join(f"{kind}: {n}" for kind, n in summarize_issues(issues).items())
    lines = [f"{len(issues)} data problem(s) found ({counts})"]
    lines += [f"  {issue}" for issue in issues[:limit]]
    if len(issues) > limit:
        lines.append(f"  ... and {len(issues) - limit} more")
    return "\n".join(lines)


def raise_on_fatal_issues(issues: Sequence[ValidationIssue]) -> None:
    """Raise DataValidationError when any issue is a defect (anything but an expected drop such as a tie)."""
    fatal = [issue for issue in issues if issue.kind not in EXPECTED_DROP_KINDS]
    if fatal:
        raise DataValidationError.from_issues(fatal)


def check_on_error(on_error: str) -> str:
    if on_error not in ("fail", "drop"):
        raise ValueError(f"on_error must be 'fail' or 'drop', got {on_error!r}")
    return on_error


# ----------------------------------------------------------------------------------------------- values


def is_null(value: Any) -> bool:
    """None, NaN or pandas NA (how tables spell an absent value)."""
    return value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value))


def to_python(value: Any) -> Any:
    """Plain Python lists/dicts/scalars: Parquet and pandas hand nested values back as numpy arrays."""
    if isinstance(value, np.ndarray):
        return [to_python(item) for item in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [to_python(item) for item in value]
    if isinstance(value, Mapping):
        return {key: to_python(item) for key, item in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def describe(value: Any) -> str:
    """Short name of a value's type for messages."""
    if is_null(value):
        return "null"
    if isinstance(value, Mapping):
        return f"dict with keys {sorted(map(str, value))[:5]}"
    return type(value).__name__


def as_messages(value: Any, field: str, assistant_only: bool = False) -> list[dict[str, str]]:
    """Check a message list and return it as ``[{"role": str, "content": str}, ...]`` (extra keys dropped)."""
    value = to_python(value)
    if not isinstance(value, list):
        raise RowProblem(field, NOT_TEXT, f"expected a list of messages, got {describe(value)}")
    messages = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("content"), str) \
                or not isinstance(message.get("role"), str) or not message["role"]:
            raise RowProblem(field, NOT_TEXT,
                             f"message {i} is not a {{'role': str, 'content': str}} mapping (got {describe(message)})")
        messages.append({"role": message["role"], "content": message["content"]})
    others = [i for i, message in enumerate(messages) if message["role"] != "assistant"] if assistant_only else []
    if others and len(others) == len(messages):
        raise RowProblem(field, NO_ASSISTANT_TURN, f"no assistant turn (roles: {role_list(messages)})")
    if others:
        raise RowProblem(field, BAD_ROLE, f"message {others[0]} has role '{messages[others[0]]['role']}' "
                                          f"(responses hold assistant messages only)")
    return messages


def role_list(messages: Sequence[Mapping]) -> str:
    """The distinct roles of some messages, in order of appearance ("user, system")."""
    return ", ".join(dict.fromkeys(str(message["role"]) for message in messages))


def as_number(value: Any, field: str) -> float:
    """A finite float from a number or numeric string; NaN when absent."""
    value = to_python(value)
    if is_null(value) or (isinstance(value, str) and not value.strip()):
        return math.nan
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise RowProblem(field, NOT_NUMBER, f"expected a number, got {describe(value)}")
    try:
        number = float(value)
    except ValueError:
        raise RowProblem(field, NOT_NUMBER, f"expected a number, got {value[:40]!r}") from None
    if not math.isfinite(number):
        raise RowProblem(field, NOT_NUMBER, f"expected a finite number, got {value!r}")
    return number


def text_field(row: Mapping, field: str, allow_empty: bool = False) -> tuple[str, Any]:
    """Check one of prompt/chosen/rejected (or a scored response); return ("plain"|"conversational", normalized
    value). A response must have content unless `allow_empty` (scoring an empty response is well defined)."""
    if field not in row:
        raise RowProblem(field, MISSING, "missing")
    value = to_python(row[field])
    if is_null(value):
        raise RowProblem(field, MISSING, "missing (null)")
    is_response = field != "prompt"
    if isinstance(value, str):
        if is_response and not allow_empty and not value.strip():
            raise RowProblem(field, EMPTY, "empty")
        return "plain", value
    if isinstance(value, list):
        messages = as_messages(value, field, assistant_only=is_response)
        if is_response and not allow_empty and not any(m["content"].strip() for m in messages):
            raise RowProblem(field, EMPTY, "empty (no message with content)")
        return "conversational", messages
    raise RowProblem(field, NOT_TEXT, f"expected text or a list of messages, got {describe(value)}")


def _id_field(row: Mapping) -> str | None:
    value = to_python(row.get("id"))
    if is_null(value) or value == "":
        return None
    if isinstance(value, str):
        return value
    # Numeric ids are common in public datasets (and integers become floats in columns with gaps).
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    raise RowProblem("id", NOT_TEXT, f"expected a string id, got {describe(value)}")


def _source_field(row: Mapping, default: str) -> str:
    value = to_python(row.get("source"))
    if is_null(value) or value == "":
        return default
    if not isinstance(value, str):
        raise RowProblem("source", NOT_TEXT, f"expected text, got {describe(value)}")
    return value


def _check_row(row: Mapping, default_source: str) -> tuple[dict[str, Any] | None, list[RowProblem]]:
    """Normalize one row; return (row or None, every problem found in its fields)."""
    problems: list[RowProblem] = []
    kinds, values = {}, {}
    for field in TEXT_FIELDS:
        try:
            kinds[field], values[field] = text_field(row, field)
        except RowProblem as problem:
            problems.append(problem)
    for field, read in (("id", _id_field), ("margin", lambda r: as_number(r.get("margin"), "margin")),
                        ("source", lambda r: _source_field(r, default_source))):
        try:
            values[field] = read(row)
        except RowProblem as problem:
            problems.append(problem)
    if "chosen" in kinds:
        for field in ("prompt", "rejected"):
            if field in kinds and kinds[field] != kinds["chosen"]:
                problems.append(RowProblem(field, MIXED_FORMAT, f"{kinds[field]} value with {kinds['chosen']} chosen"))
    if not problems and values["chosen"] == values["rejected"]:
        problems.append(RowProblem("rejected", IDENTICAL, "identical to chosen"))
    if problems:
        return None, problems
    values["kind"] = kinds["chosen"]
    return values, []


def content_key(prompt: Any, chosen: Any, rejected: Any) -> str:
    """Canonical serialization of a pair's content (duplicate detection and stable ids)."""
    return json.dumps([prompt, chosen, rejected], ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def stable_pair_id(prompt: Any, chosen: Any, rejected: Any) -> str:
    """Id derived from the content alone, so reloading the same data gives the same ids."""
    return hashlib.sha256(content_key(prompt, chosen, rejected).encode("utf-8")).hexdigest()[:16]


# ------------------------------------------------------------------------------------------- validation


def validate_records(records: Sequence[Mapping], file: str = "<memory>", on_error: str = "fail", *,
                     locations: Sequence[int] | None = None, unit: str = "row",
                     source: str | None = None) -> tuple[pd.DataFrame, list[ValidationIssue]]:
    """Validate row mappings and build a pair table.

    ``locations`` gives each record's position for messages (default: 0-based index) and ``unit`` names it
    ("line" for 1-based file lines, "row" for 0-based rows). A key absent from a record is a missing field.
    Ids default to :func:`stable_pair_id`, margins to NaN, sources to ``source`` (else ``file``).
    With ``on_error="fail"`` any defect raises :class:`DataValidationError`; with "drop" offending rows are
    left out. Either way the issues are returned, ordered by location.
    """
    check_on_error(on_error)
    locations = list(range(len(records))) if locations is None else list(locations)
    if len(locations) != len(records):
        raise ValueError(f"{len(locations)} locations for {len(records)} records")
    default_source = source if source is not None else file
    issues: list[ValidationIssue] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    for location, record in zip(locations, records):
        values, problems = _check_row(record, default_source)
        issues.extend(problem.at(file, location, unit) for problem in problems)
        if values is not None:
            rows.append((location, values))
    rows = _drop_cross_row_problems(rows, file, unit, issues)
    issues.sort(key=lambda issue: issue.row)
    if on_error == "fail":
        raise_on_fatal_issues(issues)
    return _to_frame([values for _, values in rows]), issues


def _drop_cross_row_problems(rows: list[tuple[int, dict[str, Any]]], file: str, unit: str,
                             issues: list[ValidationIssue]) -> list[tuple[int, dict[str, Any]]]:
    """Table format, duplicate pairs and duplicate ids; the first occurrence is kept."""
    table_kind = rows[0][1]["kind"] if rows else None
    first_by_content: dict[str, int] = {}
    first_by_id: dict[str, int] = {}
    kept = []
    for location, values in rows:
        if values["kind"] != table_kind:
            issues.append(ValidationIssue(file, location, "chosen", f"{values['kind']} row in a {table_kind} "
                                          f"table (first valid row is {table_kind})", MIXED_FORMAT, unit))
            continue
        key = content_key(values["prompt"], values["chosen"], values["rejected"])
        if key in first_by_content:
            issues.append(ValidationIssue(file, location, "prompt+chosen+rejected",
                                          f"duplicate of {unit} {first_by_content[key]}", DUPLICATE_PAIR, unit))
            continue
        if values["id"] is None:
            values["id"] = stable_pair_id(values["prompt"], values["chosen"], values["rejected"])
        if values["id"] in first_by_id:
            issues.append(ValidationIssue(file, location, "id", f"duplicate id {values['id']!r} "
                                          f"(first at {unit} {first_by_id[values['id']]})", DUPLICATE_ID, unit))
            continue
        first_by_content[key] = location
        first_by_id[values["id"]] = location
        kept.append((location, values))
    return kept


def _to_frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    columns = {name: [row[name] for row in rows] for name in PAIR_COLUMNS}
    frame = pd.DataFrame({
        "id": pd.Series(columns["id"], dtype="str"),
        # object keeps message lists as lists; plain text columns become pandas' string dtype below.
        "prompt": pd.Series(columns["prompt"], dtype=object),
        "chosen": pd.Series(columns["chosen"], dtype=object),
        "rejected": pd.Series(columns["rejected"], dtype=object),
        "margin": pd.Series(columns["margin"], dtype="float64"),
        "source": pd.Series(columns["source"], dtype="str"),
    }, columns=PAIR_COLUMNS)
    if rows and rows[0]["kind"] == "plain":
        frame = frame.astype({field: "str" for field in TEXT_FIELDS})
    return frame


def validate_pairs(df: pd.DataFrame, file: str = "<memory>", on_error: str = "fail", *,
                   source: str | None = None) -> tuple[pd.DataFrame, list[ValidationIssue]]:
    """Validate a pair table (rows are named by 0-based position); see :func:`validate_records`.

    Columns absent from ``df`` are missing in every row; null cells are missing values.
    """
    records = [to_python(record) for record in df.to_dict("records")]
    return validate_records(records, file, on_error, source=source)


# -------------------------------------------------------------------------------------------- rendering


def _has_chat_template(tokenizer: Any) -> bool:
    return tokenizer is not None and bool(getattr(tokenizer, "chat_template", None))


def render_messages(messages: Sequence[Mapping], tokenizer: Any = None, add_generation_prompt: bool = False) -> str:
    """Messages as text: the tokenizer's chat template when it has one, else "\\n\\nHuman: ...\\n\\nAssistant: ...".

    ``add_generation_prompt`` ends the text where an assistant reply starts ("\\n\\nAssistant:" in the
    fallback rendering).
    """
    messages = as_messages(messages, "messages")
    if _has_chat_template(tokenizer):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)
    text = "".join(f"\n\n{ROLE_NAMES.get(m['role'], m['role'].capitalize())}: {m['content']}" for m in messages)
    return text + ASSISTANT_MARKER if add_generation_prompt else text


def pair_texts(row_prompt: Any, row_response: Any, tokenizer: Any = None) -> tuple[str, str]:
    """(prompt_text, response_text) whose concatenation is the model input for one response.

    Plain rows are returned as they are. Conversational rows are rendered as the whole conversation, cut where
    the response starts (after the generation prompt), so response_text holds exactly the response tokens.
    """
    prompt, response = to_python(row_prompt), to_python(row_response)
    if isinstance(prompt, str) and isinstance(response, str):
        return prompt, response
    if not (isinstance(prompt, list) and isinstance(response, list)):
        raise ValueError(f"prompt and response must both be text or both message lists, "
                         f"got {describe(prompt)} and {describe(response)}")
    prompt_text = render_messages(prompt, tokenizer, add_generation_prompt=True)
    full_text = render_messages(prompt + response, tokenizer)
    if full_text.startswith(prompt_text):
        return prompt_text, full_text[len(prompt_text):]
    # Some templates render history differently from the generation prompt; cut at the shared prefix.
    cut = len(os.path.commonprefix([prompt_text, full_text]))
    return full_text[:cut], full_text[cut:]
