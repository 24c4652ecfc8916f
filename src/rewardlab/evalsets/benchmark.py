"""Summaries of benchmarks that score every response of a prompt (RewardBench 2, RM-Bench).

Such a set is scored one row per response (columns ``row``, ``subset``, ``is_correct``, ``position``,
``reward`` and, when known, ``hidden_norm`` and ``length``). Each benchmark splits its score into parts
(:class:`BenchmarkPart`): the overall score, its sections or domains, RM-Bench's easy/normal/hard. A part
becomes one summary row with the columns of :data:`rewardlab.metrics.SUMMARY_COLUMNS`, where ``accuracy``
is the benchmark's own score of that part and ``n`` its number of prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from rewardlab.metrics import (
    SUMMARY_COLUMNS,
    bootstrap_ci,
    expected_calibration_error,
    length_spearman,
    norm_dispersion,
)

BENCHMARK_KINDS = ("reward_bench_2", "rm_bench")


@dataclass(frozen=True)
class BenchmarkPart:
    """One reported score of a benchmark.

    ``rows``: the prompts (values of ``row``) it covers; ``pairs``: the (correct, incorrect) comparisons it
    counts, as two reward arrays, for the calibration error; ``outcomes``: per-prompt values whose mean is
    ``score`` (their bootstrap gives the confidence interval), None where the score is no such mean (an
    average over sections, the Ties formula).
    """

    label: str
    score: float
    rows: np.ndarray
    pairs: tuple[np.ndarray, np.ndarray]
    outcomes: np.ndarray | None = None


def comparison_pairs(scored: pd.DataFrame) -> pd.DataFrame:
    """Every (correct, incorrect) pair of responses of each prompt: columns row, position_c, position_r,
    reward_c, reward_r, in (row, position_c, position_r) order."""
    columns = ["row", "position", "reward"]
    correct = scored.loc[scored["is_correct"].astype(bool), columns]
    incorrect = scored.loc[~scored["is_correct"].astype(bool), columns]
    pairs = correct.merge(incorrect, on="row", suffixes=("_c", "_r"))
    return pairs.sort_values(["row", "position_c", "position_r"], kind="stable").reset_index(drop=True)


def pair_rewards(pairs: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    return pairs["reward_c"].to_numpy(np.float64), pairs["reward_r"].to_numpy(np.float64)


def _summary_row(part: BenchmarkPart, scored: pd.DataFrame, n_boot: int, alpha: float, seed: int,
                 n_bins: int) -> dict:
    responses = scored[scored["row"].isin(part.rows)]
    rewards = responses["reward"].to_numpy(np.float64)
    ci_low = ci_high = float("nan")
    if part.outcomes is not None and len(part.outcomes):
        ci_low, ci_high = bootstrap_ci(part.outcomes, n_boot=n_boot, alpha=alpha, seed=seed)
    lengths = responses["length"] if "length" in responses.columns else None
    norms = responses["hidden_norm"] if "hidden_norm" in responses.columns else None
    return {
        "subset": part.label,
        "n": int(len(np.unique(part.rows))),
        "accuracy": float(part.score),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ece": expected_calibration_error(*part.pairs, n_bins=n_bins),
        "length_spearman": length_spearman(rewards, lengths) if lengths is not None else float("nan"),
        "reward_mean": float(rewards.mean()) if rewards.size else float("nan"),
        "reward_std": float(rewards.std()) if rewards.size else float("nan"),
        "norm_dispersion": norm_dispersion(norms) if norms is not None else float("nan"),
    }


def benchmark_parts(scored: pd.DataFrame, benchmark: str) -> list[BenchmarkPart]:
    """The parts of ``benchmark``'s score, the overall one first."""
    from rewardlab.evalsets.reward_bench_2 import reward_bench_2_parts
    from rewardlab.evalsets.rm_bench import rm_bench_parts

    parts = {"reward_bench_2": reward_bench_2_parts, "rm_bench": rm_bench_parts}
    if benchmark not in parts:
        raise ValueError(f"unknown benchmark {benchmark!r} (expected one of {BENCHMARK_KINDS})")
    missing = [c for c in ("row", "subset", "is_correct", "position", "reward") if c not in scored.columns]
    if missing:
        raise ValueError(f"scored responses lack column(s) {missing}; have {list(scored.columns)}")
    return parts[benchmark](scored)


def summarize_benchmark(scored: pd.DataFrame, benchmark: str, n_boot: int = 1000, alpha: float = 0.05,
                        seed: int = 0, n_bins: int = 10) -> pd.DataFrame:
    """One summary row per part of the benchmark's score (``subset`` "all" first), in
    :data:`rewardlab.metrics.SUMMARY_COLUMNS`."""
    scored = scored.reset_index(drop=True)
    rows = [_summary_row(part, scored, n_boot, alpha, seed, n_bins) for part in benchmark_parts(scored, benchmark)]
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)
