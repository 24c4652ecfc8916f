import math

import numpy as np
import pandas as pd
import pytest

from rewardlab.metrics import (
    SUMMARY_COLUMNS,
    bootstrap_ci,
    expected_calibration_error,
    kendall_tau,
    length_spearman,
    norm_dispersion,
    pairwise_accuracy,
    response_length,
    subset_accuracies,
    summarize_scores,
)


def _logit(p: float) -> float:
    return math.log(p / (1.0 - p))


def test_accuracy_counts_ties_as_wrong():
    r_c = [1.0, 2.0, 3.0, 0.0]
    r_r = [0.0, 2.0, 4.0, -1.0]  # right, tie, wrong, right
    assert pairwise_accuracy(r_c, r_r) == 0.5
    assert pairwise_accuracy([1.0, 1.0], [1.0, 1.0]) == 0.0


def test_accuracy_rejects_mismatched_lengths_and_handles_empty():
    with pytest.raises(ValueError, match="differ in length"):
        pairwise_accuracy([1.0, 2.0], [0.0])
    assert math.isnan(pairwise_accuracy([], []))


def test_ece_matches_hand_computation():
    # Preference probabilities p = sigmoid(r_c - r_r) chosen away from bin edges (except the tie at 0.5).
    probabilities = [0.95, 0.85, 0.25, 0.65, 0.35, 0.5]
    r_r = np.full(6, 1.5)
    r_c = r_r + np.array([_logit(p) for p in probabilities])
    # confidence / correct:   0.95 ok | 0.85 ok | 0.75 wrong | 0.65 ok | 0.65 wrong | 0.5 wrong (tie)
    # bins (k/10,(k+1)/10]:   9       | 8       | 7          | 6 -------------------| 4
    by_hand = (abs(1 - 0.95) + abs(1 - 0.85) + abs(0 - 0.75) + 2 * abs(0.5 - 0.65) + abs(0 - 0.5)) / 6
    assert expected_calibration_error(r_c, r_r, n_bins=10) == pytest.approx(by_hand, abs=1e-12)
    # One bin: |overall accuracy - mean confidence|.
    one_bin = abs(3 / 6 - (0.95 + 0.85 + 0.75 + 0.65 + 0.65 + 0.5) / 6)
    assert expected_calibration_error(r_c, r_r, n_bins=1) == pytest.approx(one_bin, abs=1e-12)


def test_ece_small_for_calibrated_and_large_for_overconfident_rewards():
    # Labels drawn from a Bradley-Terry model on the true reward difference: the true rewards are
    # calibrated by construction, the same rewards scaled up five-fold are overconfident.
    rng = np.random.default_rng(3)
    diff = rng.normal(0.0, 1.5, size=20_000)
    chosen_is_first = rng.random(diff.size) < 1.0 / (1.0 + np.exp(-diff))
    margin = np.where(chosen_is_first, diff, -diff)  # r_c - r_r after orienting each pair by its label
    calibrated = expected_calibration_error(margin, np.zeros_like(margin))
    overconfident = expected_calibration_error(5 * margin, np.zeros_like(margin))
    assert calibrated < 0.02
    assert overconfident > 0.1


def test_bootstrap_ci_reproducible_and_contains_estimate():
    rng = np.random.default_rng(0)
    r_c = rng.normal(0.5, 1.0, size=300)
    r_r = rng.normal(0.0, 1.0, size=300)
    accuracy = pairwise_accuracy(r_c, r_r)
    first = bootstrap_ci((r_c, r_r), n_boot=500, seed=7)
    again = bootstrap_ci((r_c, r_r), n_boot=500, seed=7)
    assert first == again
    assert first[0] <= accuracy <= first[1]
    # Same interval from the per-pair outcomes directly.
    assert bootstrap_ci((r_c > r_r).astype(float), n_boot=500, seed=7) == first
    # Width close to the normal approximation 2 * 1.96 * sqrt(p(1-p)/n).
    expected_width = 2 * 1.96 * math.sqrt(accuracy * (1 - accuracy) / 300)
    assert first[1] - first[0] == pytest.approx(expected_width, rel=0.25)


def test_bootstrap_ci_degenerate_inputs():
    assert bootstrap_ci(np.ones(20), n_boot=50) == (1.0, 1.0)
    low, high = bootstrap_ci(np.array([]), n_boot=50)
    assert math.isnan(low) and math.isnan(high)
    with pytest.raises(ValueError):
        bootstrap_ci(np.ones(3), alpha=1.5)


def test_kendall_tau_of_known_permutations():
    proxy = [1.0, 2.0, 3.0, 4.0, 5.0]
    assert kendall_tau(proxy, [10, 20, 30, 50, 40]) == pytest.approx((9 - 1) / 10)  # one discordant pair of 10
    assert kendall_tau(proxy, proxy[::-1]) == pytest.approx(-1.0)
    assert kendall_tau(proxy, [3.0, 1.0, 2.0, 5.0, 4.0]) == pytest.approx((7 - 3) / 10)


def test_norm_dispersion_is_coefficient_of_variation():
    assert norm_dispersion([1.0, 3.0]) == pytest.approx(0.5)
    assert norm_dispersion([2.0, 2.0, 2.0]) == 0.0


def _scored_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": ["a", "b", "c", "d", "e"],
            "reward_chosen": [1.0, 0.0, 2.0, 3.0, -1.0],
            "reward_rejected": [0.0, 0.0, 1.0, 4.0, -2.0],
            "hidden_norm_chosen": [1.0, 1.0, 3.0, 3.0, 2.0],
            "hidden_norm_rejected": [3.0, 3.0, 1.0, 1.0, 2.0],
            "subset": ["x", "x", "y", "y", "y"],
        }
    )


def test_summarize_scores_overall_and_per_subset():
    summary = summarize_scores(_scored_frame(), subset_col="subset", n_boot=200, seed=1)
    assert list(summary.columns) == SUMMARY_COLUMNS
    assert summary["subset"].tolist() == ["all", "x", "y"]
    overall = summary.iloc[0]
    assert overall["n"] == 5
    assert overall["accuracy"] == pytest.approx(3 / 5)  # a, c, e right; b tie; d wrong
    rewards = [1.0, 0.0, 2.0, 3.0, -1.0, 0.0, 0.0, 1.0, 4.0, -2.0]
    assert overall["reward_mean"] == pytest.approx(np.mean(rewards))
    assert overall["reward_std"] == pytest.approx(np.std(rewards))
    norms = [1.0, 1.0, 3.0, 3.0, 2.0, 3.0, 3.0, 1.0, 1.0, 2.0]
    assert overall["norm_dispersion"] == pytest.approx(np.std(norms) / np.mean(norms))
    assert overall["ci_low"] <= overall["accuracy"] <= overall["ci_high"]
    assert summary.set_index("subset").loc["x", "accuracy"] == pytest.approx(0.5)
    assert summary.set_index("subset").loc["y", "accuracy"] == pytest.approx(2 / 3)
    assert summary.set_index("subset").loc["y", "n"] == 3


def test_length_spearman_by_hand():
    # rewards (1, 3, 2, 5) rank (1, 3, 2, 4); lengths (10, 30, 40, 20) rank (1, 3, 4, 2);
    # d = (0, 0, -2, 2), sum d^2 = 8: rho = 1 - 6 * 8 / (4 * (16 - 1)) = 0.2
    assert length_spearman([1.0, 3.0, 2.0, 5.0], [10, 30, 40, 20]) == pytest.approx(0.2)
    assert length_spearman([3.0, 2.0, 1.0], [1, 2, 3]) == pytest.approx(-1.0)
    assert math.isnan(length_spearman([1.0, 1.0, 1.0], [1, 2, 3]))  # a constant reward ranks nothing
    assert math.isnan(length_spearman([1.0], [1]))
    with pytest.raises(ValueError, match="differ in length"):
        length_spearman([1.0, 2.0], [1])


def test_response_length_counts_characters_of_text_or_messages():
    assert response_length("héllo") == 5
    messages = [{"role": "assistant", "content": "hi"}, {"role": "user", "content": "you"}]
    assert response_length(messages) == 5
    assert response_length(np.array(messages, dtype=object)) == 5


def test_summarize_scores_reports_length_spearman():
    frame = _scored_frame()
    # Lengths that rank the 10 rewards exactly as they are ranked (ties included) give rho = 1; reversed, -1.
    frame["length_chosen"] = (frame["reward_chosen"] * 10 + 100).astype(int)
    frame["length_rejected"] = (frame["reward_rejected"] * 10 + 100).astype(int)
    summary = summarize_scores(frame, subset_col="subset", n_boot=20).set_index("subset")
    assert summary.loc["all", "length_spearman"] == pytest.approx(1.0)
    frame[["length_chosen", "length_rejected"]] = 1000 - frame[["length_chosen", "length_rejected"]]
    assert summarize_scores(frame, n_boot=20).loc[0, "length_spearman"] == pytest.approx(-1.0)
    # subset x: rewards (1, 0 | 0, 0) with lengths (110, 100 | 100, 100): ranks (4, 2, 2, 2) vs (4, 2, 2, 2): 1
    assert summary.loc["x", "length_spearman"] == pytest.approx(1.0)


def test_summarize_scores_without_norms_or_subsets():
    frame = _scored_frame().drop(columns=["hidden_norm_chosen", "hidden_norm_rejected"])
    summary = summarize_scores(frame, n_boot=50)
    assert len(summary) == 1
    assert math.isnan(summary.loc[0, "norm_dispersion"])
    assert math.isnan(summary.loc[0, "length_spearman"])  # no length columns
    with pytest.raises(ValueError, match="subset column"):
        summarize_scores(frame, subset_col="missing")


def test_subset_accuracies_feed_section_scores():
    per_subset = subset_accuracies(_scored_frame())
    assert per_subset == {"x": (0.5, 2), "y": (pytest.approx(2 / 3), 3)}
