"""Comparison tables and plots of reward-model variants across evaluation sets and seeds.

Figures are built with the object-oriented matplotlib API on an Agg canvas: nothing is shown and no
global pyplot state or backend is touched, so this works the same in pipelines, tests and notebooks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

RESULT_COLUMNS = ["variant", "noise", "seed", "eval_set", "accuracy"]
DEFAULT_IN_DISTRIBUTION = ("test",)
PART_SEPARATOR = "/"  # a benchmark part's column is "<eval set>/<part>", e.g. "reward_bench_2/Ties"


def _check_results(results: pd.DataFrame) -> None:
    missing = [c for c in RESULT_COLUMNS if c not in results.columns]
    if missing:
        raise ValueError(f"results lack column(s) {missing}; have {list(results.columns)}")


def _set_order(eval_sets: Sequence[str], in_distribution: Sequence[str]) -> list[str]:
    """In-distribution sets first (in the given order), then the others in order of appearance."""
    seen = list(dict.fromkeys(eval_sets))
    first = [s for s in in_distribution if s in seen]
    return first + [s for s in seen if s not in first]


def comparison_table(
    results: pd.DataFrame, in_distribution: Sequence[str] = DEFAULT_IN_DISTRIBUTION
) -> pd.DataFrame:
    """Accuracy per (variant, noise) and evaluation set: mean and std over seeds.

    ``results`` has one row per (variant, noise, seed, eval_set) with its ``accuracy``. Returns a frame
    indexed by (variant, noise), variants in order of first appearance and noise ascending, with
    two-level columns (eval_set, stat) for stat in mean, std (sample std, NaN for one seed) and n_seeds.
    Evaluation sets named in ``in_distribution`` come first.
    """
    _check_results(results)
    grouped = results.groupby(["variant", "noise", "eval_set"], sort=False)["accuracy"]
    stats = grouped.agg(mean="mean", std="std", n_seeds="count")
    table = stats.unstack("eval_set")  # columns: (stat, eval_set)
    table.columns = table.columns.swaplevel(0, 1)
    sets = _set_order(results["eval_set"].tolist(), in_distribution)
    table = table.reindex(columns=pd.MultiIndex.from_product([sets, ["mean", "std", "n_seeds"]]))
    table.columns.names = ["eval_set", "stat"]
    variants = list(dict.fromkeys(results["variant"]))
    keys = sorted(table.index, key=lambda k: (variants.index(k[0]), float(k[1])))
    return table.loc[keys]


def benchmark_part_results(results: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``results`` that are parts of a benchmark's score (``benchmark`` set, ``subset`` not
    "all"), each renamed to the evaluation set ``<eval_set>/<subset>``, in order of appearance. Empty when
    ``results`` has no ``benchmark`` column (results written before it existed)."""
    if "benchmark" not in results.columns or "subset" not in results.columns:
        return results.iloc[0:0]
    parts = results[results["benchmark"].notna() & results["subset"].notna() & (results["subset"] != "all")].copy()
    parts["eval_set"] = parts["eval_set"].astype(str) + PART_SEPARATOR + parts["subset"].astype(str)
    return parts


def _fmt(mean: float, std: float, digits: int, bold: bool) -> str:
    if math.isnan(mean):
        return "-"
    text = f"{mean:.{digits}f}" if math.isnan(std) else f"{mean:.{digits}f} ± {std:.{digits}f}"
    return f"**{text}**" if bold else text


def comparison_markdown(table: pd.DataFrame, digits: int = 3, bold_best: bool = True) -> str:
    """A markdown table of :func:`comparison_table`: "mean ± std" per cell, the best mean per set in bold."""
    sets = list(dict.fromkeys(table.columns.get_level_values("eval_set")))
    header = "| variant | noise | " + " | ".join(sets) + " |"
    lines = [header, "|" + "---|" * (len(sets) + 2)]
    best = {s: table[(s, "mean")].max() for s in sets}
    for (variant, noise), row in table.iterrows():
        cells = [
            _fmt(row[(s, "mean")], row[(s, "std")], digits, bold_best and row[(s, "mean")] == best[s])
            for s in sets
        ]
        lines.append(f"| {variant} | {noise:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _new_figure(width: float, height: float, ncols: int = 1) -> tuple[Figure, np.ndarray]:
    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, ncols, squeeze=False)[0]
    return figure, axes


def _row_label(variant: str, noise: float, several_noises: bool) -> str:
    return f"{variant} (noise {noise:g})" if several_noises else str(variant)


def _draw_bars(ax, results: pd.DataFrame, in_distribution: Sequence[str], several_noises: bool) -> int:
    """One bar group per evaluation set, one bar per (variant, noise), error bars = std over seeds; returns
    the number of bars per group."""
    table = comparison_table(results, in_distribution)
    sets = list(dict.fromkeys(table.columns.get_level_values("eval_set")))
    n_rows = len(table)
    width = 0.8 / max(n_rows, 1)
    positions = np.arange(len(sets), dtype=np.float64)
    for k, ((variant, noise), row) in enumerate(table.iterrows()):
        means = np.array([row[(s, "mean")] for s in sets], dtype=np.float64)
        stds = np.nan_to_num(np.array([row[(s, "std")] for s in sets], dtype=np.float64))
        ax.bar(
            positions + (k - (n_rows - 1) / 2) * width,
            means,
            width,
            yerr=stds,
            capsize=2,
            label=_row_label(variant, noise, several_noises),
        )
    ax.set_xticks(positions, sets, rotation=20, ha="right")
    finite = results["accuracy"].dropna()
    if not finite.empty:
        ax.set_ylim(max(0.0, float(finite.min()) - 0.1), min(1.0, float(finite.max()) + 0.05))
    return n_rows


def plot_comparison(
    results: pd.DataFrame,
    in_distribution: Sequence[str] = DEFAULT_IN_DISTRIBUTION,
    title: str | None = None,
    parts: pd.DataFrame | None = None,
) -> Figure:
    """Grouped bars: one group per evaluation set, one bar per (variant, noise), error bars = std over seeds.

    ``parts`` (e.g. :func:`benchmark_part_results`) adds a second panel below with the parts of benchmark
    scores (RewardBench 2 sections, RM-Bench easy/normal/hard and domains). A benchmark set's bar is its own
    score, not a pairwise accuracy (chance is 1/4 on RewardBench 2's best-of-4 sections).
    """
    has_parts = parts is not None and not parts.empty
    sets = list(dict.fromkeys(results["eval_set"]))
    several_noises = pd.concat([results["noise"], parts["noise"]] if has_parts else [results["noise"]]).nunique() > 1
    width = max(6.0, 1.2 * len(sets) + 3.0)
    if has_parts:
        width = max(width, 0.9 * parts["eval_set"].nunique() + 3.0)
    figure = Figure(figsize=(width, 8.0 if has_parts else 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(2 if has_parts else 1, 1, squeeze=False)[:, 0]
    n_rows = _draw_bars(axes[0], results, in_distribution, several_noises)
    axes[0].set_ylabel("accuracy (benchmark sets: their score)" if has_parts else "pairwise accuracy")
    axes[0].axhline(0.5, color="grey", linewidth=0.8, linestyle=":")
    axes[0].legend(fontsize="small", ncols=min(3, max(n_rows, 1)))
    if has_parts:
        _draw_bars(axes[1], parts, (), several_noises)
        axes[1].set_ylabel("benchmark part score")
        axes[1].set_title("benchmark parts", fontsize="medium")
    if title:
        axes[0].set_title(title)
    return figure


def plot_bon_curves(curves: pd.DataFrame, x: str = "kl", title: str | None = None) -> Figure:
    """Best-of-n curves: gold (left) and proxy (right) score gains against ``x`` ("kl" or "sqrt_kl"),
    one line per variant."""
    if x not in ("kl", "sqrt_kl"):
        raise ValueError(f"x must be 'kl' or 'sqrt_kl', got {x!r}")
    figure, axes = _new_figure(10.0, 4.0, ncols=2)
    x_label = "KL(best-of-n ‖ policy) [nats]" if x == "kl" else "sqrt(KL) [sqrt nats]"
    for ax, column, label in zip(axes, ("gold", "proxy"), ("gold reward gain", "proxy reward gain")):
        for variant, curve in curves.groupby("variant", sort=False):
            curve = curve.sort_values("n")
            ax.plot(curve[x], curve[column], marker="o", markersize=3, label=str(variant))
        ax.set_xlabel(x_label)
        ax.set_ylabel(label)
        ax.set_title(label.split()[0])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize="small")
    if title:
        figure.suptitle(title)
    return figure
