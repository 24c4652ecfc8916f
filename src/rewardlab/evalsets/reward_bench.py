"""RewardBench (``allenai/reward-bench``): its rows as plain pairs, and its section scores."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from rewardlab.evalsets.rows import _field, _frame, _records

REWARD_BENCH_HUB_ID = "allenai/reward-bench"
REWARD_BENCH_SPLIT = "filtered"

# Section -> subsets, as in SUBSET_MAPPING of allenai/reward-bench, rewardbench/constants.py.
REWARDBENCH_MATH_SUBSET = "math-prm"
REWARDBENCH_CODE_SUBSETS = ("hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust")
REWARDBENCH_SECTIONS: dict[str, tuple[str, ...]] = {
    "chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "chat-hard": ("mt-bench-hard", "llmbar-natural", "llmbar-adver-neighbor", "llmbar-adver-GPTInst",
                  "llmbar-adver-GPTOut", "llmbar-adver-manual"),
    "safety": ("refusals-dangerous", "refusals-offensive", "xstest-should-refuse", "xstest-should-respond",
               "donotanswer"),
    "reasoning": (REWARDBENCH_MATH_SUBSET, *REWARDBENCH_CODE_SUBSETS),
}


def reward_bench_to_pairs(
    rows, subsets: Iterable[str] | None = None, source: str = "reward_bench"
) -> pd.DataFrame:
    """RewardBench rows (prompt, chosen, rejected, subset, chosen_model, rejected_model, id) to plain pairs.

    ``subsets`` keeps only the named subsets. Extra columns: chosen_model, rejected_model.
    """
    keep = set(subsets) if subsets is not None else None
    records = []
    for i, row in enumerate(_records(rows)):
        subset = str(_field(row, "subset", source, i))
        if keep is not None and subset not in keep:
            continue
        records.append(
            {
                "id": f"{source}/{row.get('id', i)}",
                "prompt": str(_field(row, "prompt", source, i)),
                "chosen": str(_field(row, "chosen", source, i)),
                "rejected": str(_field(row, "rejected", source, i)),
                "margin": math.nan,
                "source": source,
                "subset": subset,
                "chosen_model": row.get("chosen_model"),
                "rejected_model": row.get("rejected_model"),
            }
        )
    return _frame(records, ["chosen_model", "rejected_model"])


def rewardbench_section_scores(per_subset_accuracy: Mapping[str, tuple[float, int]]) -> dict[str, float]:
    """RewardBench section scores from ``{subset: (accuracy, count)}``, as fractions in [0, 1].

    Follows ``calculate_scores_per_section`` of allenai/reward-bench: each section is the count-weighted
    mean of its subsets' accuracies, except that RewardBench gives math-prm the weight of all code subsets
    together (its EXAMPLE_COUNTS lists math-prm as 984 = 6 x 164, "upweighting to be equal to code",
    where the subset has 447 pairs). Here the weight of math-prm is the summed count of the code subsets
    present (its own count when none is), so on the full set this equals RewardBench's constants.
    ``score`` is the unweighted mean of the four sections. A section with none of its subsets present
    is NaN, and so is ``score`` then. Subsets outside the four sections are ignored.
    """
    present = {k: (float(acc), int(n)) for k, (acc, n) in per_subset_accuracy.items()}
    code_count = sum(present[s][1] for s in REWARDBENCH_CODE_SUBSETS if s in present)
    scores: dict[str, float] = {}
    for section, members in REWARDBENCH_SECTIONS.items():
        weighted, total = 0.0, 0.0
        for subset in members:
            if subset not in present:
                continue
            accuracy, count = present[subset]
            weight = code_count if subset == REWARDBENCH_MATH_SUBSET and code_count > 0 else count
            weighted += accuracy * weight
            total += weight
        scores[section] = weighted / total if total > 0 else math.nan
    section_values = [scores[s] for s in REWARDBENCH_SECTIONS]
    scores["score"] = float(np.mean(section_values)) if not np.isnan(section_values).any() else math.nan
    return scores
