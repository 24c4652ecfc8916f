"""Reports of policies optimized against a proxy reward: where each run's gold reward peaks, whether it fell
afterwards (over-optimization), and gold and proxy against the KL to the initial policy for every run.

The curves are those of `rewardlab.rl.train.train_policy` (split, step, kl, proxy, gold, length,
marker_fraction), each run's with its identity in front (run, variant, noise, seed; `with_run_identity`).
Figures are built on an Agg canvas, as in `rewardlab.report`: nothing is shown and no pyplot state is touched.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

IDENTITY_COLUMNS = ["run", "variant", "noise", "seed"]
CURVE_COLUMNS = ["split", "step", "kl", "proxy", "gold", "length", "marker_fraction"]
PEAK_COLUMNS = [*IDENTITY_COLUMNS, "step_at_peak", "kl_at_peak", "gold_at_start", "gold_at_peak", "final_step",
                "kl_at_end", "gold_at_end", "gold_drop", "fell_after_peak"]
# The split whose gold scores the reports read: held-out prompts, scored at the evaluation steps.
EVAL_SPLIT = "eval"


def with_run_identity(curves: pd.DataFrame, run: str, variant: str, noise: float, seed: int) -> pd.DataFrame:
    """The curves of one run (every column kept) with its label, variant (with configuration), noise rate and seed
    in front."""
    missing = [column for column in CURVE_COLUMNS if column not in curves.columns]
    if missing:
        raise ValueError(f"curves lack column(s) {missing}; have {list(curves.columns)}")
    frame = curves.copy()
    for position, (column, value) in enumerate(zip(IDENTITY_COLUMNS, (run, variant, noise, seed))):
        frame.insert(position, column, value)
    return frame.reset_index(drop=True)


def _split_curves(curves: pd.DataFrame, split: str) -> pd.DataFrame:
    missing = [column for column in (*IDENTITY_COLUMNS, *CURVE_COLUMNS) if column not in curves.columns]
    if missing:
        raise ValueError(f"curves lack column(s) {missing}; have {list(curves.columns)}")
    return curves[(curves["split"] == split) & curves["gold"].notna()]


def rl_gold_peaks(curves: pd.DataFrame, split: str = EVAL_SPLIT, rel_drop: float = 0.1,
                  abs_drop: float = 1e-6) -> pd.DataFrame:
    """Per run (in order of appearance): the step, KL and gold score where gold peaks (the earliest step on a
    tie), gold at the start and at the last step, and whether gold fell after its peak.

    ``gold_drop`` = gold at the peak minus gold at the last step. Gold fell after its peak when the drop
    exceeds ``max(rel_drop * gain, abs_drop)``, ``gain`` being gold at the peak minus gold at the first step,
    as best-of-n's `rewardlab.bon.gold_peak` judges it: the policy gave back more than 10% (by default) of
    what it gained, or, when it never gained, its gold fell at all. Runs without a scored row of ``split``
    are left out.
    """
    rows = []
    for run, curve in _split_curves(curves, split).groupby("run", sort=False):
        curve = curve.sort_values("step", kind="stable")
        peak = curve.loc[curve["gold"].idxmax()]  # idxmax: the first, i.e. earliest, maximum
        first, last = curve.iloc[0], curve.iloc[-1]
        gold_at_peak, gold_at_end = float(peak["gold"]), float(last["gold"])
        drop = gold_at_peak - gold_at_end
        gain = gold_at_peak - float(first["gold"])
        rows.append((run, peak["variant"], float(peak["noise"]), int(peak["seed"]), int(peak["step"]),
                     float(peak["kl"]), float(first["gold"]), gold_at_peak, int(last["step"]), float(last["kl"]),
                     gold_at_end, drop, bool(drop > max(rel_drop * gain, abs_drop))))
    return pd.DataFrame(rows, columns=PEAK_COLUMNS)


def plot_rl_curves(curves: pd.DataFrame, split: str = EVAL_SPLIT, title: str | None = None) -> Figure:
    """Gold (left) and proxy (right) gain over each run's first point against the KL to the initial policy,
    one line per run; a star marks each run's gold peak."""
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    gold_ax, proxy_ax = figure.subplots(1, 2, squeeze=True)
    for run, curve in _split_curves(curves, split).groupby("run", sort=False):
        curve = curve.sort_values("step", kind="stable")
        gold = curve["gold"] - curve["gold"].iloc[0]
        line, = gold_ax.plot(curve["kl"], gold, marker="o", markersize=3, label=str(run))
        peak = curve["gold"].to_numpy().argmax()
        gold_ax.plot(curve["kl"].iloc[peak], gold.iloc[peak], marker="*", markersize=12, color=line.get_color(),
                     linestyle="none")
        proxy_ax.plot(curve["kl"], curve["proxy"] - curve["proxy"].iloc[0], marker="o", markersize=3,
                      color=line.get_color(), label=str(run))
    for ax, label in ((gold_ax, "gold reward gain"), (proxy_ax, "proxy reward gain")):
        ax.set_xlabel("KL(policy ‖ initial policy) [nats]")
        ax.set_ylabel(label)
        ax.set_title(f"{label.split()[0]} ({split} prompts)")
        ax.grid(alpha=0.3)
    if gold_ax.get_legend_handles_labels()[0]:
        gold_ax.legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return figure
