"""A study of reward over-optimization across runs: how far a policy optimized against each proxy reward model
gets in gold reward before it falls, how best-of-n sampling fares with the same reward model, how the reward
model scores in and out of distribution, and whether the dispersion of its hidden-state norms goes with the fall.

It reads the per-run files the pipelines write (one file per run label): the policy's curves
(`rl_curves_by_run`), the best-of-n curves (`bon_curves_by_run`) and the evaluation results (`ood_results_by_run`),
and writes a markdown report and a plot:

    python -m rewardlab.study --out docs/rl_study.md          # and docs/rl_study.png

Gold peaks are those of `rewardlab.rl.report.rl_gold_peaks` (held-out prompts) and `rewardlab.bon.gold_peak`. The
report leaves a marked place for conclusions written by hand, and keeps what was written there when it is
written again.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import stats

from rewardlab.bon import gold_peak
from rewardlab.rl.report import EVAL_SPLIT, rl_gold_peaks

REPORTING = Path("data/08_reporting")
RUN_FOLDERS = {"rl": "rl_curves_by_run", "bon": "bon_curves_by_run", "ood": "ood_results_by_run"}
IN_DISTRIBUTION_SET = "test"  # the set whose hidden-norm dispersion stands for the reward model's
STUDY_PIPELINES = "grm_train,ood_eval,bon,rl"
IDENTITY = ["run", "variant", "noise", "seed"]
RL_COLUMNS = ["rl_step_at_peak", "rl_kl_at_peak", "rl_gold_at_start", "rl_gold_at_peak", "rl_gold_at_end",
              "rl_gold_drop", "rl_fell_after_peak"]
BON_COLUMNS = ["bon_n_at_peak", "bon_kl_at_peak", "bon_gold_at_peak", "bon_gold_drop", "bon_overoptimized"]
HIDDEN_NORM_COLUMNS = ["hidden_norm_mean", "hidden_norm_std", "hidden_norm_cv"]
FLAG_COLUMNS = ("rl_fell_after_peak", "bon_overoptimized")  # yes/no per run: counted, not averaged
DISPERSIONS = ("hidden_norm_cv", "hidden_norm_std")
OUTCOMES = ("rl_gold_drop", "bon_gold_drop")
SPREAD_STATS = ["mean", "std", "min", "max", "n"]
CONCLUSIONS_START, CONCLUSIONS_END = "<!-- conclusions -->", "<!-- /conclusions -->"


@dataclass
class StudyTables:
    """runs: one row per run (identity, RL and best-of-n gold peaks, hidden norms, `accuracy_<set>` per evaluation
    set). variants: per (variant, noise), each metric's mean, std (over seeds, sample), min, max and n.
    correlations: Spearman's rho (and its p-value) of each hidden-norm dispersion with each gold drop across runs.
    rl_curves: the held-out (eval split) curves of the runs."""

    runs: pd.DataFrame
    variants: pd.DataFrame
    correlations: pd.DataFrame
    rl_curves: pd.DataFrame

    @property
    def accuracy_columns(self) -> list[str]:
        return [column for column in self.runs.columns if column.startswith("accuracy_")]

    @property
    def setting(self) -> dict:
        runs = self.runs
        return {"variants": list(dict.fromkeys(runs["variant"])), "noise": sorted(set(runs["noise"])),
                "seeds": sorted({int(s) for s in runs["seed"]}), "runs": len(runs),
                "runs_with_rl_gold": int(runs["rl_gold_at_peak"].notna().sum()),
                "runs_with_bon": int(runs["bon_gold_at_peak"].notna().sum()),
                "runs_with_hidden_norms": int(runs["hidden_norm_cv"].notna().sum())}


def build_study(rl_dir: Path, bon_dir: Path, ood_dir: Path, *, noise: float | None = None,
                variants: Sequence[str] | None = None) -> StudyTables:
    """The study's tables over every run with policy-optimization curves in ``rl_dir``, optionally only those
    of one label-noise rate and of the given variants (variant labels as the reports show them, in that order)."""
    rl = _select(_read_runs(rl_dir, "policy-optimization curves"), "variant", noise, variants)
    if rl.empty:
        wanted = "" if noise is None and not variants else f" (noise {noise}, variants {variants})"
        raise ValueError(f"no policy-optimization curves in {rl_dir}{wanted}: run the rl pipeline first")
    bon = _select(_read_runs(bon_dir, "best-of-n curves"), "base_variant", noise, variants)
    ood = _select(_read_runs(ood_dir, "evaluation results"), "variant", noise, variants)

    runs = rl[IDENTITY].drop_duplicates("run")
    peaks = rl_gold_peaks(rl).drop(columns=["variant", "noise", "seed", "kl_at_end", "final_step"])
    runs = runs.merge(peaks.rename(columns=lambda c: c if c == "run" else f"rl_{c}"), on="run", how="left")
    runs = runs.merge(_bon_peaks(bon), on="run", how="left").merge(_ood_columns(ood), on="run", how="left")
    for column in (*RL_COLUMNS, *BON_COLUMNS, *HIDDEN_NORM_COLUMNS):
        if column not in runs.columns:
            runs[column] = np.nan
    order = list(variants) if variants else list(dict.fromkeys(runs["variant"]))
    runs = runs.assign(_order=runs["variant"].map(order.index)).sort_values(["_order", "noise", "seed"])
    accuracy = [c for c in runs.columns if c.startswith("accuracy_")]
    runs = runs[[*IDENTITY, *RL_COLUMNS, *BON_COLUMNS, *HIDDEN_NORM_COLUMNS, *accuracy]].reset_index(drop=True)
    for flag in FLAG_COLUMNS:
        runs[flag] = runs[flag].astype(float)  # 1.0 / 0.0, NaN for a run without that curve
    metrics = [c for c in runs.columns if c not in IDENTITY and c not in ("rl_step_at_peak", "bon_n_at_peak")]
    curves = rl[rl["split"] == EVAL_SPLIT]
    curves = curves.assign(_order=curves["variant"].map(order.index)).sort_values(
        ["_order", "noise", "seed", "step"], kind="stable").drop(columns="_order")  # the plot's legend in that order
    return StudyTables(runs=runs, variants=variant_spread(runs, metrics), correlations=dispersion_correlations(runs),
                       rl_curves=curves.reset_index(drop=True))


def variant_spread(runs: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Per (variant, noise), in order of appearance: each metric's mean, std (sample, over seeds), min, max and
    how many runs have it (``n``); columns (metric, stat)."""
    grouped = runs.groupby(["variant", "noise"], sort=False)
    return pd.concat({metric: grouped[metric].agg(["mean", "std", "min", "max", "count"])
                     .rename(columns={"count": "n"}) for metric in metrics}, axis=1)


def dispersion_correlations(runs: pd.DataFrame) -> pd.DataFrame:
    """Spearman's rho across runs of each hidden-norm dispersion (cv, std) with each gold drop (RL, best-of-n),
    over the runs that have both; NaN for fewer than three runs or a constant column."""
    rows = []
    for dispersion in DISPERSIONS:
        for outcome in OUTCOMES:
            both = runs[[dispersion, outcome]].astype(float).dropna()
            rho = p_value = float("nan")
            if len(both) >= 3 and np.ptp(both[dispersion]) > 0 and np.ptp(both[outcome]) > 0:
                result = stats.spearmanr(both[dispersion], both[outcome])
                rho, p_value = float(result.statistic), float(result.pvalue)
            rows.append((dispersion, outcome, len(both), rho, p_value))
    return pd.DataFrame(rows, columns=["dispersion", "outcome", "n_runs", "spearman_rho", "p_value"])


def plot_study(curves: pd.DataFrame) -> Figure:
    """Gold (left) and proxy (right) gain over each run's first evaluation against the KL to the initial policy,
    per variant: the mean over its seeds at each evaluation step, with a band of one standard deviation."""
    figure = Figure(figsize=(10.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)
    gold_ax, proxy_ax = figure.subplots(1, 2, squeeze=True)
    several_noises = curves["noise"].nunique() > 1
    for (variant, noise), group in curves.groupby(["variant", "noise"], sort=False):
        group = group.sort_values(["run", "step"], kind="stable")
        first = group.groupby("run")[["gold", "proxy"]].transform("first")
        gains = group.assign(gold=group["gold"] - first["gold"], proxy=group["proxy"] - first["proxy"])
        by_step = gains.groupby("step").agg(kl=("kl", "mean"), gold=("gold", "mean"), gold_sd=("gold", "std"),
                                            proxy=("proxy", "mean"), proxy_sd=("proxy", "std"))
        label = f"{variant} ({group['run'].nunique()} seeds" + (f", noise {noise:g})" if several_noises else ")")
        color = None
        for ax, column in ((gold_ax, "gold"), (proxy_ax, "proxy")):
            mean, spread = by_step[column], by_step[f"{column}_sd"].fillna(0.0)
            (line,) = ax.plot(by_step["kl"], mean, marker="o", markersize=3, color=color, label=label)
            color = line.get_color()
            ax.fill_between(by_step["kl"], mean - spread, mean + spread, color=color, alpha=0.2, linewidth=0)
    for ax, name in ((gold_ax, "gold"), (proxy_ax, "proxy")):
        ax.set_xlabel("KL(policy ‖ initial policy) [nats]")
        ax.set_ylabel(f"{name} reward gain")
        ax.set_title(f"{name} ({EVAL_SPLIT} prompts), mean ± std over seeds")
        ax.grid(alpha=0.3)
    if gold_ax.get_legend_handles_labels()[0]:
        gold_ax.legend(fontsize="small")
    return figure


def write_study_report(tables: StudyTables, out_md: Path, out_png: Path, *,
                       study_command: str | None = None) -> None:
    """The markdown report (setting, per-variant spread, correlations, per-run numbers, the plot) and the plot.
    Conclusions written by hand between the conclusions markers of an earlier report are kept."""
    out_md, out_png = Path(out_md), Path(out_png)
    out_md.parent.mkdir(parents=True, exist_ok=True)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    plot_study(tables.rl_curves).savefig(out_png, dpi=120)
    kept = _written_conclusions(out_md)
    study_command = study_command or shlex.join(["python", "-m", "rewardlab.study", "--out", str(out_md),
                                                 "--png", str(out_png)])
    out_md.write_text(study_markdown(tables, os.path.relpath(out_png, out_md.parent), study_command, kept))


def study_markdown(tables: StudyTables, plot_path: str, study_command: str, conclusions: str = "") -> str:
    """The report's text: the plot is linked at ``plot_path``; ``conclusions`` goes between the markers."""
    setting = tables.setting
    base_variants = list(dict.fromkeys(v.split("__")[0] for v in setting["variants"]))
    grid = shlex.join(["kedro", "grid", "--variants", ",".join(base_variants), "--noise",
                       ",".join(f"{n:g}" for n in setting["noise"]), "--seeds", ",".join(map(str, setting["seeds"])),
                       "--pipelines", STUDY_PIPELINES])
    lines = [
        "# Reward over-optimization: policy optimization, best-of-n and hidden-state norms", "",
        "## Setting", "",
        f"- Variants: {', '.join(setting['variants'])}",
        f"- Label-noise rate: {', '.join(f'{n:g}' for n in setting['noise'])}",
        f"- Seeds: {', '.join(map(str, setting['seeds']))}",
        f"- Runs: {setting['runs']} (with held-out gold scores: {setting['runs_with_rl_gold']}; with best-of-n "
        f"curves: {setting['runs_with_bon']}; with hidden-state norms: {setting['runs_with_hidden_norms']})",
        f"- RL gold: the policy's gold reward on held-out prompts ({EVAL_SPLIT} split). Its peak is the highest "
        "evaluation, its end the last; gold drop = peak - end; it fell after its peak when the drop exceeds 10% "
        "of the gain from the start. Best-of-n gold is the gain over n = 1, its drop peak - gold at the largest n.",
        f"- Hidden-state norms: L2 norms of the reward head's input over the chosen and rejected responses of the "
        f"in-distribution `{IN_DISTRIBUTION_SET}` set; cv = std / mean.",
        "", "Reproduce (from the project root):", "", "```",
        "kedro run --pipelines world,ingest", grid, study_command, "```", "",
    ]
    if any("__" in v for v in setting["variants"]):
        lines += ["Variant labels after `__` name a configuration apart from the defaults: the grid needs the "
                  "same `--params`.", ""]
    spread = tables.variants
    lines += ["## Per variant", "", "Mean ± std over seeds [min, max]; a yes/no column counts the runs with yes.", ""]
    for title, columns in (("Policy optimization (RL)", RL_COLUMNS[1:]), ("Best-of-n", BON_COLUMNS[1:]),
                           ("Reward model", [*HIDDEN_NORM_COLUMNS, *tables.accuracy_columns])):
        lines += [f"### {title}", "", _spread_markdown(spread, [c for c in columns if c in spread.columns]), ""]
    per_run = tables.runs.assign(**{flag: tables.runs[flag].map({1.0: "yes", 0.0: "no"}).fillna("-")
                                    for flag in FLAG_COLUMNS})
    lines += ["## Hidden-norm dispersion and gold drop across runs (Spearman)", "",
              _markdown(tables.correlations), "", "## Per run", "", _markdown(per_run), "",
              "## Curves", "", "Gain over each run's first evaluation (the initial policy) against the KL to the "
              "initial policy: per variant, the mean over seeds at each evaluation step, with a band of one standard "
              "deviation.", "", f"![gold and proxy against KL per variant]({plot_path})", "",
              "## Conclusions", "", CONCLUSIONS_START, conclusions, CONCLUSIONS_END, ""]
    return "\n".join(lines)


def _read_runs(folder: Path, what: str) -> pd.DataFrame:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no folder of per-run {what}")
    frames = [pd.read_csv(path) for path in sorted(folder.glob("*.csv"))]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _select(frame: pd.DataFrame, variant_column: str, noise: float | None,
            variants: Sequence[str] | None) -> pd.DataFrame:
    if frame.empty:
        return frame
    if noise is not None:
        frame = frame[np.isclose(frame["noise"].astype(float), float(noise))]
    if variants:
        frame = frame[frame[variant_column].isin(list(variants))]
    return frame.reset_index(drop=True)


def _bon_peaks(bon: pd.DataFrame) -> pd.DataFrame:
    """Best-of-n gold peak per run: the curves' `variant` column is the run label."""
    if bon.empty:
        return pd.DataFrame(columns=["run", *BON_COLUMNS])
    peaks = gold_peak(bon).rename(columns={"variant": "run"})
    return peaks.rename(columns=lambda c: c if c == "run" else f"bon_{c}")[["run", *BON_COLUMNS]]


def _ood_columns(ood: pd.DataFrame) -> pd.DataFrame:
    """Per run: the accuracy of every evaluation set (in-distribution first) and the hidden norms of the
    in-distribution set (NaN for results written without them)."""
    if ood.empty:
        return pd.DataFrame(columns=["run"])
    overall = ood[ood["subset"].isna() | (ood["subset"] == "all")] if "subset" in ood.columns else ood
    overall = overall.rename(columns={"run_label": "run"})
    sets = list(dict.fromkeys(overall["eval_set"]))
    sets = sorted(sets, key=lambda s: s != IN_DISTRIBUTION_SET)
    accuracy = overall.pivot_table(index="run", columns="eval_set", values="accuracy", aggfunc="first")
    accuracy = accuracy.reindex(columns=sets).rename(columns=lambda s: f"accuracy_{s}").reset_index()
    accuracy.columns.name = None
    in_distribution = overall[overall["eval_set"] == IN_DISTRIBUTION_SET].drop_duplicates("run")
    norms = in_distribution.reindex(columns=["run", *HIDDEN_NORM_COLUMNS])
    return accuracy.merge(norms, on="run", how="left")


def _cell(value) -> str:
    if isinstance(value, (float, np.floating)):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _markdown(frame: pd.DataFrame) -> str:
    header = "| " + " | ".join(map(str, frame.columns)) + " |"
    rows = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, "|" + "---|" * len(frame.columns), *rows])


def _spread_markdown(spread: pd.DataFrame, metrics: Sequence[str]) -> str:
    rows = []
    for (variant, noise), row in spread.iterrows():
        cells = [str(variant), f"{noise:g}"]
        for metric in metrics:
            mean, std, low, high, n = (row[(metric, stat)] for stat in SPREAD_STATS)
            if n == 0:
                cells.append("-")
            elif metric in FLAG_COLUMNS:
                cells.append(f"{round(mean * n)}/{int(n)}")
            else:
                std_text = "" if math.isnan(std) else f" ± {std:.4g}"
                cells.append(f"{mean:.4g}{std_text} [{low:.4g}, {high:.4g}]")
        rows.append(cells)
    return _markdown(pd.DataFrame(rows, columns=["variant", "noise", *metrics]))


def _written_conclusions(path: Path) -> str:
    """What stands between the conclusions markers of an earlier report, stripped; '' when there is none."""
    if not path.exists():
        return ""
    text = path.read_text()
    start, end = text.find(CONCLUSIONS_START), text.find(CONCLUSIONS_END)
    return text[start + len(CONCLUSIONS_START):end].strip() if 0 <= start < end else ""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rewardlab.study", description=(
        "Gold peaks of policy optimization and best-of-n, evaluation accuracies and hidden-state norm dispersion "
        "of every run, per variant over seeds, as a markdown report and a plot."))
    parser.add_argument("--out", type=Path, default=Path("docs/rl_study.md"), help="markdown report to write")
    parser.add_argument("--png", type=Path, default=None, help="plot to write (default: --out with .png)")
    for key, folder in RUN_FOLDERS.items():
        parser.add_argument(f"--{key}-dir", type=Path, default=REPORTING / folder,
                            help=f"folder of per-run files (default: {REPORTING / folder})")
    parser.add_argument("--noise", type=float, default=None, help="only runs of this label-noise rate")
    parser.add_argument("--variants", default=None, help="only these variant labels, comma-separated, in order")
    args = parser.parse_args(argv)
    png = args.png or args.out.with_suffix(".png")
    variants = [v.strip() for v in args.variants.split(",") if v.strip()] if args.variants else None
    command = ["python", "-m", "rewardlab.study", "--out", str(args.out), "--png", str(png)]
    command += ["--noise", f"{args.noise:g}"] if args.noise is not None else []
    command += ["--variants", ",".join(variants)] if variants else []
    try:
        tables = build_study(args.rl_dir, args.bon_dir, args.ood_dir, noise=args.noise, variants=variants)
    except (FileNotFoundError, ValueError) as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1
    write_study_report(tables, args.out, png, study_command=shlex.join(command))
    print(f"Wrote {args.out} and {png} ({len(tables.runs)} runs)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
