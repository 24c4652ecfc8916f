"""Out-of-distribution evaluation sets: converters from their hub layouts to the pair schema, loading, and
RewardBench section scores.

Every converter returns the pair schema (``id, prompt, chosen, rejected, margin, source``) followed by a
``subset`` column and set-specific extra columns. Hub datasets are read through the ``datasets`` library
(``load_from_disk`` for ``save_to_disk`` directories, ``load_dataset`` otherwise); parquet / jsonl / csv
files through pandas, so the sets also work on machines without hub access.
"""

from rewardlab.evalsets.hhh import HHH_CONFIGS, HHH_HUB_ID, hhh_to_pairs
from rewardlab.evalsets.loading import EVAL_KINDS, EvalSetNotFoundError, load_eval_set
from rewardlab.evalsets.mt_bench import MT_BENCH_HUB_ID, MT_BENCH_SPLITS, mt_bench_to_pairs
from rewardlab.evalsets.reward_bench import (
    REWARD_BENCH_HUB_ID,
    REWARD_BENCH_SPLIT,
    REWARDBENCH_CODE_SUBSETS,
    REWARDBENCH_MATH_SUBSET,
    REWARDBENCH_SECTIONS,
    reward_bench_to_pairs,
    rewardbench_section_scores,
)
from rewardlab.evalsets.rows import EVAL_COLUMNS, EvalSetFormatError

__all__ = [
    "EVAL_COLUMNS",
    "EVAL_KINDS",
    "HHH_CONFIGS",
    "HHH_HUB_ID",
    "MT_BENCH_HUB_ID",
    "MT_BENCH_SPLITS",
    "REWARDBENCH_CODE_SUBSETS",
    "REWARDBENCH_MATH_SUBSET",
    "REWARDBENCH_SECTIONS",
    "REWARD_BENCH_HUB_ID",
    "REWARD_BENCH_SPLIT",
    "EvalSetFormatError",
    "EvalSetNotFoundError",
    "hhh_to_pairs",
    "load_eval_set",
    "mt_bench_to_pairs",
    "reward_bench_to_pairs",
    "rewardbench_section_scores",
]
