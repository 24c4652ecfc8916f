"""The policy-optimization reports on hand-made curves: where gold peaks, where it ends, whether it fell after
its peak, and the plot of gold and proxy against KL, one line per run."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rewardlab.rl.report import PEAK_COLUMNS, plot_rl_curves, rl_gold_peaks, with_run_identity


def _curves(gold: list[float], proxy: list[float] | None = None, split: str = "eval", every: int = 10) -> pd.DataFrame:
    steps = [every * i for i in range(len(gold))]
    return pd.DataFrame({
        "split": split, "step": steps, "kl": [0.5 * i for i in range(len(gold))],
        "proxy": proxy if proxy is not None else [float(i) for i in range(len(gold))], "gold": gold,
        "length": 12.0, "marker_fraction": 0.0,
    })


def _run(label: str, gold: list[float], noise: float = 0.25, seed: int = 0, **kwargs) -> pd.DataFrame:
    return with_run_identity(_curves(gold, **kwargs), run=label, variant=label.split("__")[0], noise=noise, seed=seed)


def test_identity_columns_come_first_and_every_curve_column_stays():
    curves = _curves([0.1, 0.2]).assign(reward_std=[1.0, 2.0])
    frame = with_run_identity(curves, run="bt__noise0.25__seed1", variant="bt", noise=0.25, seed=1)
    assert list(frame.columns[:4]) == ["run", "variant", "noise", "seed"]
    assert list(frame.columns[4:]) == list(curves.columns)
    assert (frame["run"] == "bt__noise0.25__seed1").all() and (frame["seed"] == 1).all()
    with pytest.raises(ValueError, match="marker_fraction"):
        with_run_identity(curves.drop(columns="marker_fraction"), run="r", variant="v", noise=0.0, seed=0)


def test_a_peak_then_a_drop_is_flagged_and_a_rise_is_not():
    curves = pd.concat([
        _run("bt__noise0.25__seed0", [0.0, 0.4, 1.0, 0.7, 0.5]),   # gains 1.0, gives back 0.5
        _run("grm_sft__noise0.25__seed0", [0.0, 0.3, 0.6, 0.8, 0.9]),  # still rising
        _run("bsr__noise0__seed2", [0.0, 0.5, 1.0, 0.95], noise=0.0, seed=2),  # gives back 5% of its gain
    ], ignore_index=True)
    peaks = rl_gold_peaks(curves)
    assert list(peaks.columns) == PEAK_COLUMNS
    assert peaks["run"].tolist() == ["bt__noise0.25__seed0", "grm_sft__noise0.25__seed0", "bsr__noise0__seed2"]
    bt, grm, bsr = (row for _, row in peaks.iterrows())
    assert (bt["step_at_peak"], bt["kl_at_peak"], bt["gold_at_peak"]) == (20, 1.0, 1.0)
    assert (bt["final_step"], bt["kl_at_end"], bt["gold_at_end"]) == (40, 2.0, 0.5)
    assert bt["gold_drop"] == pytest.approx(0.5) and bool(bt["fell_after_peak"])
    assert (grm["step_at_peak"], grm["gold_drop"], bool(grm["fell_after_peak"])) == (40, 0.0, False)
    assert bsr["gold_drop"] == pytest.approx(0.05) and not bool(bsr["fell_after_peak"])
    assert (bsr["variant"], bsr["noise"], bsr["seed"]) == ("bsr", 0.0, 2)


def test_a_run_that_never_gains_has_fallen_when_its_gold_falls_at_all():
    peaks = rl_gold_peaks(pd.concat([_run("flat", [0.3, 0.3, 0.3]), _run("down", [0.3, 0.2, 0.1])]))
    flat, down = (row for _, row in peaks.iterrows())
    assert not bool(flat["fell_after_peak"]) and flat["step_at_peak"] == 0  # the earliest step on a tie
    assert bool(down["fell_after_peak"]) and down["gold_drop"] == pytest.approx(0.2)


def test_only_scored_rows_of_the_chosen_split_count():
    train = _run("bt", [5.0, 9.0, 7.0], split="train")  # higher gold on training prompts: not what is reported
    evaluation = _run("bt", [0.0, 0.2, 0.4])
    unscored = _run("bt", [float("nan")], every=100).assign(step=[100])
    curves = pd.concat([train, evaluation, unscored], ignore_index=True).sample(frac=1.0, random_state=0)
    (row,) = (row for _, row in rl_gold_peaks(curves).iterrows())
    assert (row["step_at_peak"], row["gold_at_peak"], row["final_step"]) == (20, 0.4, 20)
    (row,) = (row for _, row in rl_gold_peaks(curves, split="train").iterrows())
    assert (row["step_at_peak"], row["gold_at_peak"], bool(row["fell_after_peak"])) == (10, 9.0, True)
    only_train = rl_gold_peaks(train)
    assert only_train.empty and list(only_train.columns) == PEAK_COLUMNS


def test_the_plot_has_gold_and_proxy_gains_against_kl_for_every_run():
    curves = pd.concat([
        _run("bt__noise0.25__seed0", [1.0, 1.4, 2.0, 1.2], proxy=[3.0, 4.0, 6.0, 9.0]),
        _run("grm_sft__noise0.25__seed0", [1.0, 1.1, 1.3, 1.6]),
        _run("bt__noise0.25__seed0", [7.0, 7.0, 7.0, 7.0], split="train"),
    ], ignore_index=True)
    figure = plot_rl_curves(curves)
    gold_ax, proxy_ax = figure.axes
    gold_lines = [line for line in gold_ax.get_lines() if line.get_linestyle() != "None"]
    stars = [line for line in gold_ax.get_lines() if line.get_marker() == "*"]
    assert [line.get_label() for line in gold_lines] == ["bt__noise0.25__seed0", "grm_sft__noise0.25__seed0"]
    assert len(proxy_ax.get_lines()) == 2 and len(stars) == 2
    assert np.allclose(gold_lines[0].get_xdata(), [0.0, 0.5, 1.0, 1.5])
    assert np.allclose(gold_lines[0].get_ydata(), [0.0, 0.4, 1.0, 0.2])
    assert np.allclose(proxy_ax.get_lines()[0].get_ydata(), [0.0, 1.0, 3.0, 6.0])
    assert (stars[0].get_xdata()[0], stars[0].get_ydata()[0]) == (1.0, pytest.approx(1.0))
    assert "KL" in gold_ax.get_xlabel() and "eval" in gold_ax.get_title()
    assert all(math.isfinite(v) for v in gold_ax.get_ylim())


def test_the_run_summary_says_where_the_policys_gold_peaks():
    from rewardlab.run_summary import format_run_summary

    text = format_run_summary(run_id="abc", metrics={}, rl_gold=[(0, 0.1), (20, 0.5), (10, 0.5), (30, 0.2)])
    assert "  Policy:     gold peaks at 0.5 at step 10 (0.2 at step 30)" in text.splitlines()
    assert "Policy" not in format_run_summary(run_id="abc", metrics={})
