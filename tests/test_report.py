import math

import numpy as np
import pandas as pd
import pytest
from matplotlib.container import BarContainer
from matplotlib.figure import Figure

from rewardlab.bon import bon_curves
from rewardlab.report import (
    benchmark_part_results,
    comparison_markdown,
    comparison_table,
    plot_bon_curves,
    plot_comparison,
)

ACCURACIES = {
    # (variant, noise, eval_set): accuracies of seeds 0, 1, 2
    ("bt", 0.0, "ood_both"): [0.60, 0.62, 0.64],
    ("bt", 0.0, "test"): [0.70, 0.72, 0.74],
    ("bt", 0.0, "hhh"): [0.50, 0.55, 0.60],
    ("grm", 0.0, "ood_both"): [0.66, 0.68, 0.70],
    ("grm", 0.0, "test"): [0.71, 0.71, 0.71],
    ("grm", 0.0, "hhh"): [0.56, 0.58, 0.60],
    ("bt", 0.2, "ood_both"): [0.55, 0.57, 0.59],
    ("bt", 0.2, "test"): [0.60, 0.70, 0.80],
    ("bt", 0.2, "hhh"): [0.50, 0.50, 0.50],
}


@pytest.fixture
def results() -> pd.DataFrame:
    rows = [
        {"variant": v, "noise": noise, "seed": seed, "eval_set": s, "accuracy": acc}
        for (v, noise, s), accs in ACCURACIES.items()
        for seed, acc in enumerate(accs)
    ]
    return pd.DataFrame(rows)


def test_table_means_and_stds_over_seeds(results):
    table = comparison_table(results)
    assert list(table.index) == [("bt", 0.0), ("bt", 0.2), ("grm", 0.0)]
    assert list(dict.fromkeys(table.columns.get_level_values("eval_set"))) == ["test", "ood_both", "hhh"]
    for (variant, noise, eval_set), accs in ACCURACIES.items():
        assert table.loc[(variant, noise), (eval_set, "mean")] == pytest.approx(np.mean(accs))
        assert table.loc[(variant, noise), (eval_set, "std")] == pytest.approx(np.std(accs, ddof=1))
        assert table.loc[(variant, noise), (eval_set, "n_seeds")] == 3
    assert table.loc[("bt", 0.2), ("test", "std")] == pytest.approx(0.1)


def test_table_in_distribution_order_is_configurable(results):
    table = comparison_table(results, in_distribution=["hhh"])
    assert list(dict.fromkeys(table.columns.get_level_values("eval_set"))) == ["hhh", "ood_both", "test"]


def test_table_single_seed_has_nan_std(results):
    table = comparison_table(results[results["seed"] == 0])
    assert math.isnan(table.loc[("bt", 0.0), ("test", "std")])
    assert "0.700 |" in comparison_markdown(table, bold_best=False)


def test_table_requires_result_columns(results):
    with pytest.raises(ValueError, match="accuracy"):
        comparison_table(results.drop(columns=["accuracy"]))


def test_markdown_shows_mean_std_and_bolds_the_best(results):
    markdown = comparison_markdown(comparison_table(results))
    lines = markdown.strip().splitlines()
    assert lines[0] == "| variant | noise | test | ood_both | hhh |"
    assert len(lines) == 2 + 3
    assert "| bt | 0.2 | 0.700 ± 0.100 |" in markdown
    assert "**0.680 ± 0.020**" in markdown  # grm is best on ood_both


def test_plot_comparison_has_one_bar_group_per_row(results):
    figure = plot_comparison(results, title="accuracy")
    assert isinstance(figure, Figure)
    (ax,) = figure.axes
    bars = [c for c in ax.containers if isinstance(c, BarContainer)]
    assert len(bars) == 3  # (bt, 0.0), (bt, 0.2), (grm, 0.0)
    assert all(len(b.patches) == 3 for b in bars)  # three evaluation sets
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "bt (noise 0)",
        "bt (noise 0.2)",
        "grm (noise 0)",
    ]
    figure.canvas.draw()  # renders without a display


def _with_benchmark_parts(results: pd.DataFrame) -> pd.DataFrame:
    """ood_metrics-like rows: every set overall, plus RewardBench 2 with two of its sections."""
    results = results.assign(subset="all", benchmark=None)
    rows = []
    for (variant, noise), seed in [(("bt", 0.0), 0), (("bt", 0.0), 1), (("grm", 0.0), 0)]:
        for subset, accuracy in [("all", 0.40 + 0.1 * seed), ("Factuality", 0.30), ("Ties", 0.50 + 0.2 * seed)]:
            rows.append({"variant": variant, "noise": noise, "seed": seed, "eval_set": "rb2", "accuracy": accuracy,
                         "subset": subset, "benchmark": "reward_bench_2"})
    return pd.concat([results, pd.DataFrame(rows)], ignore_index=True)


def test_benchmark_parts_become_sets_of_their_own(results):
    parts = benchmark_part_results(_with_benchmark_parts(results))
    assert list(dict.fromkeys(parts["eval_set"])) == ["rb2/Factuality", "rb2/Ties"]
    table = comparison_table(parts)
    # bt's Ties over seeds 0 and 1: (0.5 + 0.7) / 2 = 0.6; grm's one seed: 0.5
    assert table.loc[("bt", 0.0), ("rb2/Ties", "mean")] == pytest.approx(0.6)
    assert table.loc[("grm", 0.0), ("rb2/Ties", "mean")] == pytest.approx(0.5)
    assert benchmark_part_results(results).empty  # results written before the benchmark column existed


def test_plot_comparison_with_benchmark_parts_adds_a_panel(results):
    combined = _with_benchmark_parts(results)
    overall = combined[combined["subset"] == "all"]
    figure = plot_comparison(overall, parts=benchmark_part_results(combined))
    top, bottom = figure.axes[:2]
    top_bars = [c for c in top.containers if isinstance(c, BarContainer)]
    bottom_bars = [c for c in bottom.containers if isinstance(c, BarContainer)]
    assert [len(b.patches) for b in top_bars] == [4, 4, 4]  # test, ood_both, hhh, rb2
    assert [len(b.patches) for b in bottom_bars] == [2, 2]  # (bt, 0), (grm, 0) over rb2/Factuality, rb2/Ties
    assert [t.get_text() for t in bottom.get_xticklabels()] == ["rb2/Factuality", "rb2/Ties"]
    figure.canvas.draw()


@pytest.mark.parametrize("x", ["kl", "sqrt_kl"])
def test_plot_bon_curves_has_one_line_per_variant(x):
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(4, 8))
    curves = bon_curves({"bt": rng.normal(size=(4, 8)), "grm": gold, "bsr": gold + rng.normal(size=(4, 8))}, gold)
    figure = plot_bon_curves(curves, x=x)
    gold_ax, proxy_ax = figure.axes
    assert len(gold_ax.get_lines()) == 3 and len(proxy_ax.get_lines()) == 3
    first_line = gold_ax.get_lines()[0]
    expected = curves[curves["variant"] == "bt"].sort_values("n")
    assert np.allclose(first_line.get_xdata(), expected[x])
    assert np.allclose(first_line.get_ydata(), expected["gold"])
    with pytest.raises(ValueError):
        plot_bon_curves(curves, x="n")
