"""The format adapters (pure functions from one source row to one pair row) and the conversion of a batch of
source rows into a validated pair table."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd

from rewardlab.adapters.splitting import (
    check_responses,
    shared_length,
    split_conversations,
    split_hh_dialogues,
    split_plain_texts,
)
from rewardlab.schema import (
    MISSING,
    MIXED_FORMAT,
    NOT_TEXT,
    TIE,
    RowProblem,
    ValidationIssue,
    as_messages,
    as_number,
    check_on_error,
    describe,
    is_null,
    raise_on_fatal_issues,
    to_python,
    validate_records,
)

PAIR_FIELDS = ("id", "prompt", "chosen", "rejected", "margin", "source")


def _require(row: Mapping, name: str) -> Any:
    if name not in row:
        raise RowProblem(name, MISSING, "missing")
    value = to_python(row[name])
    if is_null(value):
        raise RowProblem(name, MISSING, "missing (null)")
    return value


def _extras(row: Mapping) -> dict[str, Any]:
    return {"id": row.get("id"), "margin": row.get("margin"), "source": row.get("source")}


def adapt_pairs(row: Mapping) -> dict[str, Any]:
    """Rows already in the pair schema (extra columns are left out)."""
    return {name: row[name] for name in PAIR_FIELDS if name in row}


def adapt_trl_explicit(row: Mapping) -> dict[str, Any]:
    """TRL explicit-prompt rows; ``score_chosen``/``score_rejected`` (as in UltraFeedback) give the margin."""
    pair = adapt_pairs(row)
    _check_message_responses(pair.get("chosen"), pair.get("rejected"))
    if is_null(to_python(pair.get("margin"))) and "score_chosen" in row and "score_rejected" in row:
        pair["margin"] = as_number(row["score_chosen"], "score_chosen") - as_number(row["score_rejected"],
                                                                                     "score_rejected")
    return pair


def _check_message_responses(chosen: Any, rejected: Any) -> None:
    """Message responses without an assistant turn, or starting with different prompts, are refused as such.

    Other defects (malformed messages, plain text) are left to validation, which reports every field of a row.
    """
    chosen, rejected = to_python(chosen), to_python(rejected)
    if not (isinstance(chosen, list) and isinstance(rejected, list)):
        return
    try:
        chosen, rejected = as_messages(chosen, "chosen"), as_messages(rejected, "rejected")
    except RowProblem:
        return
    shared = shared_length(chosen, rejected)
    check_responses(chosen[shared:], rejected[shared:], shared)


def adapt_trl_implicit(row: Mapping) -> dict[str, Any]:
    """TRL implicit-prompt rows: full texts or full conversations; the prompt is what they share."""
    chosen, rejected = _require(row, "chosen"), _require(row, "rejected")
    if isinstance(chosen, str) and isinstance(rejected, str):
        prompt, chosen, rejected = split_plain_texts(chosen, rejected)
    elif isinstance(chosen, list) and isinstance(rejected, list):
        prompt, chosen, rejected = split_conversations(chosen, rejected)
    elif isinstance(chosen, (str, list)) and isinstance(rejected, (str, list)):
        raise RowProblem("rejected", MIXED_FORMAT, f"{describe(rejected)} rejected with {describe(chosen)} chosen")
    else:
        bad = "chosen" if not isinstance(chosen, (str, list)) else "rejected"
        raise RowProblem(bad, NOT_TEXT, f"expected text or a list of messages, got {describe(row[bad])}")
    return {**_extras(row), "prompt": prompt, "chosen": chosen, "rejected": rejected}


def adapt_hh_rlhf(row: Mapping) -> dict[str, Any]:
    """Anthropic HH-RLHF: ``chosen``/``rejected`` are whole "\\n\\nHuman: ...\\n\\nAssistant: ..." dialogues."""
    chosen, rejected = _require(row, "chosen"), _require(row, "rejected")
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str):
            raise RowProblem(name, NOT_TEXT, f"expected a dialogue string, got {describe(value)}")
    prompt, chosen, rejected = split_hh_dialogues(chosen, rejected)
    return {**_extras(row), "prompt": prompt, "chosen": chosen, "rejected": rejected}


def adapt_unified_feedback(row: Mapping) -> dict[str, Any]:
    """llm-blender/Unified-Feedback: the higher-rated of conv_A/conv_B is chosen; margin = rating difference.

    Equal ratings raise a ``tie`` problem: the row carries no preference.
    """
    rating_a = as_number(_require(row, "conv_A_rating"), "conv_A_rating")
    rating_b = as_number(_require(row, "conv_B_rating"), "conv_B_rating")
    conv_a, conv_b = _require(row, "conv_A"), _require(row, "conv_B")
    if rating_a == rating_b:
        raise RowProblem("conv_A_rating+conv_B_rating", TIE, f"tie: both conversations rated {rating_a:g}")
    if rating_a > rating_b:
        prompt, chosen, rejected = split_conversations(conv_a, conv_b, "conv_A", "conv_B")
    else:
        prompt, chosen, rejected = split_conversations(conv_b, conv_a, "conv_B", "conv_A")
    return {**_extras(row), "prompt": prompt, "chosen": chosen, "rejected": rejected,
            "margin": abs(rating_a - rating_b)}


def adapt_skywork(row: Mapping) -> dict[str, Any]:
    """Skywork-Reward-Preference: ``chosen``/``rejected`` are full conversations (user turns included)."""
    prompt, chosen, rejected = split_conversations(_require(row, "chosen"), _require(row, "rejected"))
    return {**_extras(row), "prompt": prompt, "chosen": chosen, "rejected": rejected}


ADAPTERS: dict[str, Callable[[Mapping], dict[str, Any]]] = {
    "pairs": adapt_pairs,
    "trl_explicit": adapt_trl_explicit,
    "trl_implicit": adapt_trl_implicit,
    "hh_rlhf": adapt_hh_rlhf,
    "unified_feedback": adapt_unified_feedback,
    "skywork": adapt_skywork,
}
FORMATS = tuple(ADAPTERS)


def pairs_from_records(records: Sequence[Mapping], format: str = "pairs", file: str = "<memory>",
                       on_error: str = "fail", *, locations: Sequence[int] | None = None, unit: str = "row",
                       source: str | None = None,
                       prior_issues: Sequence[ValidationIssue] = ()) -> tuple[pd.DataFrame, list[ValidationIssue]]:
    """Convert source rows with the format's adapter and validate them into a pair table.

    ``prior_issues`` (e.g. undecodable file lines) are reported together with the conversion and validation
    issues, so ``on_error="fail"`` raises once with everything. Ties are dropped in both modes.
    """
    if format not in ADAPTERS:
        raise ValueError(f"unknown format {format!r}; expected one of {', '.join(FORMATS)}")
    check_on_error(on_error)
    locations = list(range(len(records))) if locations is None else list(locations)
    if len(locations) != len(records):
        raise ValueError(f"{len(locations)} locations for {len(records)} records")
    adapter = ADAPTERS[format]
    issues = list(prior_issues)
    converted, converted_locations = [], []
    for location, record in zip(locations, records):
        try:
            converted.append(adapter(record))
            converted_locations.append(location)
        except RowProblem as problem:
            issues.append(problem.at(file, location, unit))
    frame, validation_issues = validate_records(converted, file, "drop", locations=converted_locations,
                                                unit=unit, source=source)
    issues = sorted(issues + validation_issues, key=lambda issue: issue.row)
    if on_error == "fail":
        raise_on_fatal_issues(issues)
    return frame, issues
