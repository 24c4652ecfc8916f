"""Out-of-distribution evaluation sets: converters from their hub layouts to the pair schema, loading, and
the scores of RewardBench, RewardBench 2 and RM-Bench.

Every pair converter returns the pair schema (``id, prompt, chosen, rejected, margin, source``) followed by a
``subset`` column and set-specific extra columns. RewardBench 2 and RM-Bench, which compare more than two
responses per prompt, convert to one row per response (``RESPONSE_COLUMNS``) and are scored by
``summarize_benchmark``. Hub datasets are read through the ``datasets`` library
(``load_from_disk`` for ``save_to_disk`` directories, ``load_dataset`` otherwise); parquet / jsonl / csv
files through pandas, so the sets also work on machines without hub access.
"""

from rewardlab.evalsets.benchmark import BENCHMARK_KINDS, BenchmarkPart, summarize_benchmark
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
from rewardlab.evalsets.reward_bench_2 import (
    REWARD_BENCH_2_HUB_ID,
    REWARD_BENCH_2_SECTIONS,
    REWARD_BENCH_2_SPLIT,
    best_of_n_outcome,
    reward_bench_2_scores,
    reward_bench_2_to_responses,
    ties_score,
)
from rewardlab.evalsets.rm_bench import (
    RM_BENCH_DOMAINS,
    RM_BENCH_HUB_ID,
    RM_BENCH_SPLIT,
    RM_BENCH_STYLES,
    matrix_accuracies,
    rm_bench_matrix,
    rm_bench_scores,
    rm_bench_to_responses,
)
from rewardlab.evalsets.rows import EVAL_COLUMNS, RESPONSE_COLUMNS, EvalSetFormatError

__all__ = [
    "BENCHMARK_KINDS",
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
    "REWARD_BENCH_2_HUB_ID",
    "REWARD_BENCH_2_SECTIONS",
    "REWARD_BENCH_2_SPLIT",
    "RESPONSE_COLUMNS",
    "RM_BENCH_DOMAINS",
    "RM_BENCH_HUB_ID",
    "RM_BENCH_SPLIT",
    "RM_BENCH_STYLES",
    "BenchmarkPart",
    "EvalSetFormatError",
    "EvalSetNotFoundError",
    "best_of_n_outcome",
    "hhh_to_pairs",
    "load_eval_set",
    "matrix_accuracies",
    "mt_bench_to_pairs",
    "reward_bench_2_scores",
    "reward_bench_2_to_responses",
    "reward_bench_to_pairs",
    "rewardbench_section_scores",
    "rm_bench_matrix",
    "rm_bench_scores",
    "rm_bench_to_responses",
    "summarize_benchmark",
    "ties_score",
]
