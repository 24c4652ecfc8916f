"""The over-optimization study on hand-made per-run files: gold peaks and drops of policy optimization (held-out
prompts) and best-of-n, evaluation accuracies and hidden norms per run, their spread per variant, the Spearman
table across runs, the plot, the report and its command line."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rewardlab.bon import kl_bon
from rewardlab.study import CONCLUSIONS_END, CONCLUSIONS_START, build_study, main, plot_study, write_study_report

STEPS = [0, 10, 20, 30]
# (variant, seed) -> held-out gold at STEPS. bt peaks at step 10 and falls by 0.4, 0.5, 0.6; bsr peaks at step 20
# and gives back 0.01, 0.015, 0.02 of a gain of 0.3 (under 10%: it did not fall).
EVAL_GOLD = {("bt", s): [0.0, 0.5 + 0.1 * s, 0.3, 0.1] for s in range(3)}
EVAL_GOLD |= {("bsr", s): [0.0, 0.2, 0.3, 0.3 - 0.005 * (s + 2)] for s in range(3)}
# Hidden-norm cv in the same order as the RL gold drops (rho +1), best-of-n drops in the opposite order (rho -1).
HIDDEN_CV = {("bt", 0): 0.30, ("bt", 1): 0.35, ("bt", 2): 0.40, ("bsr", 0): 0.10, ("bsr", 1): 0.12, ("bsr", 2): 0.14}
BON_DROP = {("bsr", 0): 0.6, ("bsr", 1): 0.5, ("bsr", 2): 0.4, ("bt", 0): 0.3, ("bt", 1): 0.2, ("bt", 2): 0.1}
BON_NS = [1, 2, 4, 8]


def _label(variant: str, noise: float, seed: int) -> str:
    return f"{variant}__noise{noise:g}__seed{seed}"


def _rl_curves(variant: str, noise: float, seed: int, gold: list[float]) -> pd.DataFrame:
    rows = []
    for step, value in zip(STEPS, gold):
        kl = step * 0.01 * (1 + 0.1 * seed)
        # Training prompts score higher and peak last: the study must read the held-out ones.
        rows.append(("train", step, kl, 2.0 * step, 10.0 + step, 40, 0.0))
        rows.append(("eval", step, kl, 0.1 * step + seed, value, 40, 0.0))
    frame = pd.DataFrame(rows, columns=["split", "step", "kl", "proxy", "gold", "length", "marker_fraction"])
    frame.insert(0, "run", _label(variant, noise, seed))
    frame.insert(1, "variant", variant)
    frame.insert(2, "noise", noise)
    frame.insert(3, "seed", seed)
    return frame


def _bon_curves(variant: str, noise: float, seed: int, drop: float) -> pd.DataFrame:
    gold = [0.0, 1.0, 1.0 - drop / 2, 1.0 - drop]  # peaks at n = 2
    kl = kl_bon(np.array(BON_NS))
    return pd.DataFrame({"variant": _label(variant, noise, seed), "base_variant": variant, "noise": noise,
                         "seed": seed, "n": BON_NS, "kl": kl, "sqrt_kl": np.sqrt(kl), "proxy_raw": np.arange(4.0),
                         "gold_raw": gold, "proxy": np.arange(4.0), "gold": gold})


def _ood_results(variant: str, noise: float, seed: int, cv: float) -> pd.DataFrame:
    label = _label(variant, noise, seed)
    rows = [
        {"eval_set": "test", "subset": "all", "accuracy": 0.8 + 0.01 * seed, "norm_dispersion": cv,
         "hidden_norm_mean": 10.0 + seed, "hidden_norm_std": 2.0, "hidden_norm_cv": cv},
        {"eval_set": "ood_prompt", "subset": "all", "accuracy": 0.6 + 0.02 * seed, "norm_dispersion": 0.5,
         "hidden_norm_mean": 9.0, "hidden_norm_std": 4.5, "hidden_norm_cv": 0.5},
        # A subset's row: not the set's accuracy.
        {"eval_set": "ood_prompt", "subset": "hard", "accuracy": 0.1, "norm_dispersion": None,
         "hidden_norm_mean": None, "hidden_norm_std": None, "hidden_norm_cv": None},
    ]
    frame = pd.DataFrame(rows)
    for position, (column, value) in enumerate(zip(["run_label", "variant", "noise", "seed"],
                                                   [label, variant, noise, seed])):
        frame.insert(position, column, value)
    return frame


@pytest.fixture
def run_dirs(tmp_path):
    dirs = {name: tmp_path / name for name in ("rl", "bon", "ood")}
    for folder in dirs.values():
        folder.mkdir()

    def write(variant, noise, seed, gold, bon_drop=None, cv=None):
        label = _label(variant, noise, seed)
        _rl_curves(variant, noise, seed, gold).to_csv(dirs["rl"] / f"{label}.csv", index=False)
        if bon_drop is not None:
            _bon_curves(variant, noise, seed, bon_drop).to_csv(dirs["bon"] / f"{label}.csv", index=False)
        if cv is not None:
            _ood_results(variant, noise, seed, cv).to_csv(dirs["ood"] / f"{label}.csv", index=False)

    for key, gold in EVAL_GOLD.items():
        write(*key[:1], 0.25, key[1], gold, BON_DROP[key], HIDDEN_CV[key])
    # Outside the study below: another noise rate, and a variant with policy curves only.
    write("bt", 0.0, 0, [0.0, 9.0, 9.0, 9.0], 0.9, 0.9)
    write("grm_sft", 0.25, 0, [0.0, 0.1, 0.2, 0.3])
    return dirs


def _study(run_dirs, **filters):
    return build_study(run_dirs["rl"], run_dirs["bon"], run_dirs["ood"], **filters)


def test_per_run_peaks_drops_accuracies_and_hidden_norms(run_dirs):
    tables = _study(run_dirs, noise=0.25, variants=["bt", "bsr"])
    runs = tables.runs.set_index("run")
    assert list(runs.index) == [_label(v, 0.25, s) for v in ("bt", "bsr") for s in range(3)]

    bt1 = runs.loc["bt__noise0.25__seed1"]
    assert bt1["rl_step_at_peak"] == 10 and bt1["rl_kl_at_peak"] == pytest.approx(0.11)
    assert bt1["rl_gold_at_peak"] == pytest.approx(0.6) and bt1["rl_gold_at_end"] == pytest.approx(0.1)
    assert bt1["rl_gold_drop"] == pytest.approx(0.5) and bt1["rl_fell_after_peak"] == 1.0
    bsr2 = runs.loc["bsr__noise0.25__seed2"]
    assert bsr2["rl_step_at_peak"] == 20 and bsr2["rl_gold_drop"] == pytest.approx(0.02)
    assert bsr2["rl_fell_after_peak"] == 0.0

    assert bt1["bon_n_at_peak"] == 2 and bt1["bon_kl_at_peak"] == pytest.approx(math.log(2) - 0.5)
    assert bt1["bon_gold_at_peak"] == pytest.approx(1.0) and bt1["bon_gold_drop"] == pytest.approx(0.2)
    assert bt1["bon_overoptimized"] == 1.0

    assert bt1["accuracy_test"] == pytest.approx(0.81) and bt1["accuracy_ood_prompt"] == pytest.approx(0.62)
    assert [c for c in tables.runs.columns if c.startswith("accuracy_")] == ["accuracy_test", "accuracy_ood_prompt"]
    assert bt1["hidden_norm_cv"] == pytest.approx(0.35) and bt1["hidden_norm_mean"] == pytest.approx(11.0)
    assert bt1["hidden_norm_std"] == pytest.approx(2.0)  # the in-distribution set's, not ood_prompt's
    assert set(tables.rl_curves["split"]) == {"eval"} and len(tables.rl_curves) == 6 * len(STEPS)
    assert tables.setting == {"variants": ["bt", "bsr"], "noise": [0.25], "seeds": [0, 1, 2], "runs": 6,
                              "runs_with_rl_gold": 6, "runs_with_bon": 6, "runs_with_hidden_norms": 6}


def test_spread_per_variant_over_seeds(run_dirs):
    spread = _study(run_dirs, noise=0.25, variants=["bt", "bsr"]).variants
    assert list(spread.index) == [("bt", 0.25), ("bsr", 0.25)]
    drop = spread.loc[("bt", 0.25), "rl_gold_drop"]
    assert drop["mean"] == pytest.approx(0.5) and drop["std"] == pytest.approx(0.1)
    assert (drop["min"], drop["max"], drop["n"]) == (pytest.approx(0.4), pytest.approx(0.6), 3)
    kl = spread.loc[("bt", 0.25), "rl_kl_at_peak"]
    assert kl["mean"] == pytest.approx(0.11) and kl["std"] == pytest.approx(0.01)
    assert spread.loc[("bt", 0.25), ("rl_fell_after_peak", "mean")] == 1.0
    assert spread.loc[("bsr", 0.25), ("rl_fell_after_peak", "mean")] == 0.0
    assert spread.loc[("bsr", 0.25), ("bon_gold_drop", "mean")] == pytest.approx(0.5)
    assert spread.loc[("bsr", 0.25), ("hidden_norm_cv", "max")] == pytest.approx(0.14)
    assert spread.loc[("bsr", 0.25), ("accuracy_test", "mean")] == pytest.approx(0.81)


def test_correlation_of_hidden_norm_dispersion_with_gold_drops(run_dirs):
    table = _study(run_dirs, noise=0.25, variants=["bt", "bsr"]).correlations.set_index(["dispersion", "outcome"])
    assert table.loc[("hidden_norm_cv", "rl_gold_drop"), "spearman_rho"] == pytest.approx(1.0)
    assert table.loc[("hidden_norm_cv", "bon_gold_drop"), "spearman_rho"] == pytest.approx(-1.0)
    assert table.loc[("hidden_norm_cv", "rl_gold_drop"), "p_value"] < 0.01
    assert (table["n_runs"] == 6).all()
    # Every run's hidden_norm_std is 2.0: no ranking to correlate.
    assert math.isnan(table.loc[("hidden_norm_std", "rl_gold_drop"), "spearman_rho"])


def test_without_filters_every_run_is_read_and_missing_files_leave_gaps(run_dirs):
    tables = _study(run_dirs)
    setting = tables.setting
    assert setting["runs"] == 8 and setting["noise"] == [0.0, 0.25] and setting["variants"] == ["bsr", "bt",
                                                                                               "grm_sft"]
    assert setting["runs_with_bon"] == 7 and setting["runs_with_hidden_norms"] == 7
    grm = tables.runs.set_index("run").loc["grm_sft__noise0.25__seed0"]
    assert grm["rl_gold_at_peak"] == pytest.approx(0.3) and math.isnan(grm["bon_gold_drop"])
    assert math.isnan(grm["hidden_norm_cv"]) and math.isnan(grm["accuracy_test"])
    assert tables.correlations.set_index(["dispersion", "outcome"]).loc[
        ("hidden_norm_cv", "rl_gold_drop"), "n_runs"] == 7
    assert tables.variants.loc[("bt", 0.0), ("rl_gold_at_peak", "n")] == 1
    assert math.isnan(tables.variants.loc[("bt", 0.0), ("rl_gold_at_peak", "std")])


def test_plot_is_the_mean_over_seeds_with_a_band(run_dirs):
    figure = plot_study(_study(run_dirs, noise=0.25, variants=["bt", "bsr"]).rl_curves)
    gold_ax, proxy_ax = figure.axes
    bt_gold = gold_ax.lines[0]
    assert bt_gold.get_label() == "bt (3 seeds)"
    np.testing.assert_allclose(bt_gold.get_xdata(), [0.0, 0.11, 0.22, 0.33])
    np.testing.assert_allclose(bt_gold.get_ydata(), [0.0, 0.6, 0.3, 0.1])
    np.testing.assert_allclose(proxy_ax.lines[0].get_ydata(), [0.0, 1.0, 2.0, 3.0])  # gain over the first step
    assert len(gold_ax.lines) == len(proxy_ax.lines) == 2
    assert len(gold_ax.collections) == len(proxy_ax.collections) == 2  # one band per variant
    band = gold_ax.collections[0].get_paths()[0].vertices[:, 1]
    assert band.max() == pytest.approx(0.6 + 0.1) and band.min() == pytest.approx(0.0)


def test_report_and_plot_are_written_and_conclusions_kept(run_dirs, tmp_path):
    tables = _study(run_dirs, noise=0.25, variants=["bt", "bsr"])
    out_md, out_png = tmp_path / "docs" / "study.md", tmp_path / "docs" / "study.png"
    write_study_report(tables, out_md, out_png)
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = out_md.read_text()
    for line in ("- Variants: bt, bsr", "- Label-noise rate: 0.25", "- Seeds: 0, 1, 2", "kedro run --pipelines "
                 "world,ingest", "kedro grid --variants bt,bsr --noise 0.25 --seeds 0,1,2 --pipelines "
                 "grm_train,ood_eval,bon,rl", "![gold and proxy against KL per variant](study.png)"):
        assert line in text, line
    assert "- Runs: 6 (with held-out gold scores: 6; with best-of-n curves: 6; with hidden-state norms: 6)" in text
    assert "| bt | 0.25 | 0.11 ± 0.01 [0.1, 0.12] |" in text  # the RL table's first column: KL at the peak
    assert "| bt | 0.25 | 3/3 |" not in text and " 3/3 |" in text and " 0/3 |" in text
    assert "| hidden_norm_cv | rl_gold_drop | 6 | 1 |" in text
    assert "| bt__noise0.25__seed1 | bt | 0.25 | 1 | 10 | 0.11 | 0 | 0.6 | 0.1 | 0.5 | yes | 2 |" in text
    assert "| bsr__noise0.25__seed2 | bsr | 0.25 | 2 | 20 | 0.24 | 0 | 0.3 | 0.28 | 0.02 | no | 2 |" in text
    assert f"{CONCLUSIONS_START}\n\n{CONCLUSIONS_END}" in text

    written = text.replace(f"{CONCLUSIONS_START}\n\n", f"{CONCLUSIONS_START}\nGold falls after its peak.\n")
    out_md.write_text(written)
    write_study_report(tables, out_md, out_png)
    assert f"{CONCLUSIONS_START}\nGold falls after its peak.\n{CONCLUSIONS_END}" in out_md.read_text()


def test_command_line_writes_the_report_or_names_what_is_missing(run_dirs, tmp_path, capsys):
    out = tmp_path / "rl_study.md"
    args = ["--out", str(out), "--rl-dir", str(run_dirs["rl"]), "--bon-dir", str(run_dirs["bon"]),
            "--ood-dir", str(run_dirs["ood"]), "--noise", "0.25", "--variants", "bt,bsr"]
    assert main(args) == 0
    assert (tmp_path / "rl_study.png").exists()
    assert f"python -m rewardlab.study --out {out} --png {tmp_path / 'rl_study.png'} --noise 0.25 " \
           "--variants bt,bsr" in out.read_text()
    assert "(6 runs)" in capsys.readouterr().out

    assert main(["--out", str(out), "--rl-dir", str(tmp_path / "absent")]) == 1
    assert f"Error: {tmp_path / 'absent'}: no folder of per-run policy-optimization curves" in capsys.readouterr().err
    assert main([*args[:-2], "--variants", "margin"]) == 1
    assert "no policy-optimization curves" in capsys.readouterr().err
