"""HHH-Alignment (``HuggingFaceH4/hhh_alignment``): one pair per wrong choice against the right one."""

from __future__ import annotations

import math

import pandas as pd

from rewardlab.evalsets.rows import EvalSetFormatError, _as_list, _field, _frame, _records

HHH_HUB_ID = "HuggingFaceH4/hhh_alignment"
HHH_CONFIGS = ("harmless", "helpful", "honest", "other")


def hhh_to_pairs(rows, subset: str | None = None, source: str = "hhh") -> pd.DataFrame:
    """HHH-Alignment rows (``input``, ``targets={"choices": [...], "labels": [...]}``) to pairs.

    The choice labelled 1 is chosen; each choice labelled 0 gives one pair against it (the hub set has
    exactly two choices per row, so one pair per row). Prompts are plain strings. ``subset`` is the config
    name (harmless/helpful/honest/other); when None, a row's own ``subset`` field is used, else ``source``.
    """
    records = []
    for i, row in enumerate(_records(rows)):
        targets = _field(row, "targets", source, i)
        try:
            choices = [str(c) for c in _as_list(targets["choices"])]
            labels = [int(v) for v in _as_list(targets["labels"])]
        except (KeyError, TypeError) as err:
            raise EvalSetFormatError(f"{source}: row {i} field 'targets' lacks choices/labels ({err})") from err
        if len(choices) != len(labels) or labels.count(1) != 1 or len(choices) < 2:
            raise EvalSetFormatError(
                f"{source}: row {i} field 'targets' needs >= 2 choices with exactly one label 1, "
                f"got labels {labels} for {len(choices)} choices"
            )
        label = subset if subset is not None else str(row.get("subset") or source)
        best = labels.index(1)
        losers = [k for k, v in enumerate(labels) if v != 1]
        for k in losers:
            suffix = "" if len(losers) == 1 else f"-{k}"
            prompt = str(_field(row, "input", source, i))
            records.append({"id": f"{source}/{label}/{i}{suffix}", "prompt": prompt, "chosen": choices[best],
                            "rejected": choices[k], "margin": math.nan, "source": source, "subset": label})
    return _frame(records, [])
