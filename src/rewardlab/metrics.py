"""Evaluation metrics for reward models scored on preference pairs.

Every function is pure (numpy in, numbers or a DataFrame out). A pair counts as correct only when the
chosen response gets a strictly higher reward than the rejected one: a reward model that cannot tell the two
apart (equal rewards) has not ranked them, so ties count as wrong.

Length bias is measured in characters (:func:`response_length`), not tokens: the count does not depend on the
tokenizer, so runs of different base models stay comparable.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats

SUMMARY_COLUMNS = [
    "subset",
    "n",
    "accuracy",
    "ci_low",
    "ci_high",
    "ece",
    "length_spearman",
    "reward_mean",
    "reward_std",
    "norm_dispersion",
]
ALL_SUBSETS = "all"  # label of the summary row that covers the whole set

# Bootstrap replicates are drawn in chunks so memory stays bounded for large sets.
_BOOTSTRAP_CHUNK_ELEMENTS = 2_000_000


def _paired(r_c, r_r) -> tuple[np.ndarray, np.ndarray]:
    r_c = np.asarray(r_c, dtype=np.float64).ravel()
    r_r = np.asarray(r_r, dtype=np.float64).ravel()
    if r_c.shape != r_r.shape:
        raise ValueError(f"chosen and rejected rewards differ in length: {r_c.size} vs {r_r.size}")
    return r_c, r_r


def pair_outcomes(r_c, r_r) -> np.ndarray:
    """Per-pair correctness (1.0 when the chosen reward is strictly higher, else 0.0)."""
    r_c, r_r = _paired(r_c, r_r)
    return (r_c > r_r).astype(np.float64)


def pairwise_accuracy(r_c, r_r) -> float:
    """Fraction of pairs with reward_chosen > reward_rejected (strict: ties are wrong); NaN for no pairs."""
    outcomes = pair_outcomes(r_c, r_r)
    return float(outcomes.mean()) if outcomes.size else float("nan")


def bootstrap_ci(
    values, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap confidence interval of a mean.

    ``values`` is either a 1-D array (or list) of per-example values (e.g. 0/1 correctness) or a tuple
    ``(r_c, r_r)`` of two reward arrays, in which case the interval is that of the pairwise accuracy.
    Resamples examples with replacement ``n_boot`` times (numpy ``default_rng(seed)``) and returns the
    ``alpha/2`` and ``1 - alpha/2`` quantiles of the resampled means. NaNs for an empty input.
    """
    if isinstance(values, tuple) and len(values) == 2:
        values = pair_outcomes(*values)
    values = np.asarray(values, dtype=np.float64).ravel()
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    n = values.size
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    rows_per_chunk = max(1, _BOOTSTRAP_CHUNK_ELEMENTS // n)
    means = np.empty(n_boot)
    for start in range(0, n_boot, rows_per_chunk):
        stop = min(n_boot, start + rows_per_chunk)
        idx = rng.integers(0, n, size=(stop - start, n))
        means[start:stop] = values[idx].mean(axis=1)
    low, high = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def expected_calibration_error(r_c, r_r, n_bins: int = 10) -> float:
    """Reliability-diagram ECE of the Bradley-Terry preference probabilities (Guo et al., 2017).

    For each pair the model's probability that the chosen response is preferred is
    ``p = sigmoid(r_c - r_r)``. The model predicts the chosen response when ``p > 0.5`` and the rejected
    one otherwise, with confidence ``max(p, 1 - p)``; the prediction is correct when ``r_c > r_r`` (so a
    tie, ``p = 0.5``, is a wrong prediction at confidence 0.5, matching :func:`pairwise_accuracy`).
    Confidences fall into ``n_bins`` equal-width bins on [0, 1], right-closed: ``(k/n_bins, (k+1)/n_bins]``,
    the first bin also holding 0 (confidences are at least 0.5, so the lower half of the bins stays
    empty). Then ``ECE = sum_b |B_b|/n * |accuracy(B_b) - mean confidence(B_b)|``. NaN for no pairs.
    """
    r_c, r_r = _paired(r_c, r_r)
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    if r_c.size == 0:
        return float("nan")
    p = special.expit(r_c - r_r)
    confidence = np.maximum(p, 1.0 - p)
    correct = (r_c > r_r).astype(np.float64)
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins)
    conf_sums = np.bincount(bins, weights=confidence, minlength=n_bins)
    correct_sums = np.bincount(bins, weights=correct, minlength=n_bins)
    filled = counts > 0
    gaps = np.abs(correct_sums[filled] - conf_sums[filled])  # = |B| * |acc - conf|
    return float(gaps.sum() / r_c.size)


def kendall_tau(proxy_scores, gold_scores) -> float:
    """Kendall's tau-b rank correlation between proxy and gold scores (scipy.stats.kendalltau)."""
    proxy = np.asarray(proxy_scores, dtype=np.float64).ravel()
    gold = np.asarray(gold_scores, dtype=np.float64).ravel()
    if proxy.shape != gold.shape:
        raise ValueError(f"proxy and gold scores differ in length: {proxy.size} vs {gold.size}")
    return float(stats.kendalltau(proxy, gold, variant="b").statistic)


def response_length(response) -> int:
    """Characters of a response: its text, or the summed contents of its messages (a conversational one)."""
    if isinstance(response, str):
        return len(response)
    if isinstance(response, np.ndarray):
        response = response.tolist()
    if isinstance(response, (list, tuple)):
        return sum(len(str(m.get("content", ""))) if isinstance(m, dict) else len(str(m)) for m in response)
    return len(str(response))


def length_spearman(rewards, lengths) -> float:
    """Spearman rank correlation of rewards with response lengths (scipy.stats.spearmanr, ties ranked by
    their mean rank): near +1, longer responses get higher rewards whatever they say (a length bias).

    NaN for fewer than two responses or when rewards or lengths are all equal (no ranking to correlate).
    """
    rewards = np.asarray(rewards, dtype=np.float64).ravel()
    lengths = np.asarray(lengths, dtype=np.float64).ravel()
    if rewards.shape != lengths.shape:
        raise ValueError(f"rewards and lengths differ in length: {rewards.size} vs {lengths.size}")
    if rewards.size < 2 or np.ptp(rewards) == 0 or np.ptp(lengths) == 0:
        return float("nan")
    return float(stats.spearmanr(rewards, lengths).statistic)


def norm_dispersion(hidden_norms) -> float:
    """Coefficient of variation (population std / mean) of last-layer hidden-state norms.

    A low value means the representations have similar norms, which BSR-style regularization aims for.
    """
    norms = np.asarray(hidden_norms, dtype=np.float64).ravel()
    if norms.size == 0:
        return float("nan")
    mean = norms.mean()
    return float(norms.std() / mean) if mean != 0 else float("nan")


def _summary_row(
    label: str, frame: pd.DataFrame, has_norms: bool, n_boot: int, alpha: float, seed: int, n_bins: int
) -> dict:
    r_c = frame["reward_chosen"].to_numpy(dtype=np.float64)
    r_r = frame["reward_rejected"].to_numpy(dtype=np.float64)
    rewards = np.concatenate([r_c, r_r])
    ci_low, ci_high = bootstrap_ci((r_c, r_r), n_boot=n_boot, alpha=alpha, seed=seed)
    dispersion = float("nan")
    if has_norms:
        norms = np.concatenate(
            [
                frame["hidden_norm_chosen"].to_numpy(dtype=np.float64),
                frame["hidden_norm_rejected"].to_numpy(dtype=np.float64),
            ]
        )
        dispersion = norm_dispersion(norms)
    spearman = float("nan")
    if {"length_chosen", "length_rejected"} <= set(frame.columns):
        lengths = np.concatenate([frame["length_chosen"].to_numpy(np.float64),
                                  frame["length_rejected"].to_numpy(np.float64)])
        spearman = length_spearman(rewards, lengths)
    return {
        "subset": label,
        "n": int(len(frame)),
        "accuracy": pairwise_accuracy(r_c, r_r),
        "ci_low": ci_low,
        "ci_high": ci_high,
        "ece": expected_calibration_error(r_c, r_r, n_bins=n_bins),
        "length_spearman": spearman,
        "reward_mean": float(rewards.mean()) if rewards.size else float("nan"),
        "reward_std": float(rewards.std()) if rewards.size else float("nan"),
        "norm_dispersion": dispersion,
    }


def summarize_scores(
    scored_df: pd.DataFrame,
    subset_col: str | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    n_bins: int = 10,
) -> pd.DataFrame:
    """Metrics of one scored evaluation set, overall and per subset.

    ``scored_df`` has ``reward_chosen`` and ``reward_rejected`` (one row per pair) and optionally
    ``hidden_norm_chosen`` / ``hidden_norm_rejected`` and ``length_chosen`` / ``length_rejected``. Returns
    one row labelled ``"all"`` followed, when ``subset_col`` is given, by one row per subset value (sorted),
    with the columns of :data:`SUMMARY_COLUMNS`. ``reward_mean``/``reward_std`` are over all 2n rewards
    (population std); ``norm_dispersion`` is over all 2n hidden norms and NaN when the norm columns are absent;
    ``length_spearman`` (:func:`length_spearman`) is over all 2n rewards and lengths, NaN without lengths.
    """
    missing = [c for c in ("reward_chosen", "reward_rejected") if c not in scored_df.columns]
    if missing:
        raise ValueError(f"scored frame lacks column(s) {missing}; has {list(scored_df.columns)}")
    if subset_col is not None and subset_col not in scored_df.columns:
        raise ValueError(f"subset column {subset_col!r} not in scored frame columns {list(scored_df.columns)}")
    has_norms = {"hidden_norm_chosen", "hidden_norm_rejected"} <= set(scored_df.columns)
    rows = [_summary_row(ALL_SUBSETS, scored_df, has_norms, n_boot, alpha, seed, n_bins)]
    if subset_col is not None:
        for label in sorted(scored_df[subset_col].astype(str).unique()):
            part = scored_df[scored_df[subset_col].astype(str) == label]
            rows.append(_summary_row(label, part, has_norms, n_boot, alpha, seed, n_bins))
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def subset_accuracies(scored_df: pd.DataFrame, subset_col: str = "subset") -> dict[str, tuple[float, int]]:
    """``{subset: (accuracy, count)}``, the input of ``evalsets.rewardbench_section_scores``."""
    out: dict[str, tuple[float, int]] = {}
    for label, part in scored_df.groupby(subset_col, sort=True):
        out[str(label)] = (pairwise_accuracy(part["reward_chosen"], part["reward_rejected"]), int(len(part)))
    return out

