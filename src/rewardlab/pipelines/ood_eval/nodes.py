"""OOD evaluation nodes: score a saved reward model on every evaluation set and compare runs."""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import pandas as pd

from rewardlab.config import OodEvalConfig
from rewardlab.pipelines.tracking import metrics_for_mlflow, to_accelerator
from rewardlab.run_identity import run_identity

logger = logging.getLogger(__name__)

WORLD_SETS = ("test", "ood_prompt", "ood_response", "ood_both")
HIDDEN_NORM_COLUMNS = ("hidden_norm_mean", "hidden_norm_std", "hidden_norm_cv")


def load_extra_sets(params: dict[str, Any]) -> dict[str, pd.DataFrame]:
    """Evaluation sets from hub ids or local paths (HHH, MT-Bench, RewardBench, any pair data)."""
    from rewardlab.evalsets import load_eval_set

    sets = {}
    for spec in OodEvalConfig.from_dict(params, "ood_eval").extra_sets:
        loaded = load_eval_set(spec.as_spec())
        if loaded is None:  # optional and absent: load_eval_set has logged why
            continue
        frame, info = loaded
        frame = frame.copy()
        frame.attrs["info"] = info
        sets[spec.name] = frame
    return sets


def score_eval_sets(
    reward_model_path: str,
    test: pd.DataFrame,
    ood_prompt: pd.DataFrame,
    ood_response: pd.DataFrame,
    ood_both: pd.DataFrame,
    eval_responses: pd.DataFrame,
    extra_sets: dict[str, pd.DataFrame],
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rewards for every pair of every set, and proxy rewards for every world response (vs its gold).

    A pair set gives one row per pair (reward_chosen, reward_rejected, their hidden norms, length_chosen,
    length_rejected in characters, truncated). A benchmark set that compares more than two responses per
    prompt (RewardBench 2, RM-Bench: a `benchmark` column) gives one row per response (row, row_id, position,
    is_correct, benchmark, reward, hidden_norm, length, truncated): each response is scored once, and
    `summarize_eval` applies the benchmark's own rule to the responses of each prompt.
    """
    from rewardlab.metrics import response_length
    from rewardlab.modeling import load_reward_model
    from rewardlab.scoring import score_pairs, score_responses
    from transformers import AutoTokenizer

    cfg = OodEvalConfig.from_dict(params, "ood_eval")
    model = to_accelerator(load_reward_model(reward_model_path, **cfg.load_args()))
    tokenizer = AutoTokenizer.from_pretrained(reward_model_path)
    layout = {"batch_size": cfg.batch_size, "max_length": cfg.max_length, "packing": cfg.packing,
              "max_tokens": cfg.max_tokens_per_batch, "min_response_tokens": cfg.min_response_tokens}
    named_sets = dict(zip(WORLD_SETS, (test, ood_prompt, ood_response, ood_both))) | dict(extra_sets)
    scored = []
    for name, pairs in named_sets.items():
        if "benchmark" in pairs.columns:
            logger.info("Scoring %d responses of '%s'", len(pairs), name)
            scores = _score_benchmark_responses(model, tokenizer, pairs, layout)
        else:
            logger.info("Scoring %d pairs of '%s'", len(pairs), name)
            scores = score_pairs(model, tokenizer, pairs, **layout)
            if "subset" in pairs.columns:
                scores["subset"] = pairs.set_index("id").loc[scores["id"], "subset"].to_numpy()
            scores["length_chosen"] = [response_length(r) for r in pairs["chosen"]]
            scores["length_rejected"] = [response_length(r) for r in pairs["rejected"]]
        scores.insert(0, "eval_set", name)
        scored.append(scores)
    responses = eval_responses.copy()
    responses["proxy"] = score_responses(
        model, tokenizer, responses["prompt"].tolist(), responses["response"].tolist(), **layout
    )
    return pd.concat(scored, ignore_index=True), responses


def _score_benchmark_responses(model, tokenizer, responses: pd.DataFrame, layout: dict[str, Any]) -> pd.DataFrame:
    """Each (prompt, response) of a benchmark set scored once, in input order, with its hidden-state norm and
    whether max_length cut it (what `rewardlab.scoring.score_responses` computes, kept in full here)."""
    from rewardlab.encoding import encode_responses, pad_id
    from rewardlab.metrics import response_length
    from rewardlab.scoring import score_encoded

    encoded = encode_responses(tokenizer, responses["prompt"], responses["response"], layout["max_length"],
                               min_response_tokens=layout["min_response_tokens"])
    rewards, norms = score_encoded(model, [e.input_ids for e in encoded], pad_id(tokenizer), layout["batch_size"],
                                   desc="scoring responses", packing=layout["packing"],
                                   max_tokens=layout["max_tokens"])
    scores = responses[["id", "row", "row_id", "subset", "benchmark", "position", "is_correct"]].reset_index(drop=True)
    scores["reward"] = rewards
    scores["hidden_norm"] = norms
    scores["length"] = [response_length(r) for r in responses["response"]]
    scores["truncated"] = np.array([e.truncation.any for e in encoded], dtype=bool)
    return scores


def summarize_eval(
    scores: pd.DataFrame, response_scores: pd.DataFrame, parameters: dict[str, Any]
) -> tuple[pd.DataFrame, dict, dict[str, pd.DataFrame]]:
    """Per set (and subset): accuracy with a bootstrap CI, ECE, the Spearman correlation of reward with length
    in characters, reward stats, norm dispersion, Kendall tau, and how many pairs (responses, for a benchmark
    set) were cut to `max_length`; one result file per run label.

    Each set's overall row also has ``hidden_norm_mean``, ``hidden_norm_std`` and ``hidden_norm_cv`` (std /
    mean): the L2 norms of the reward head's input, the last layer's hidden state at the last real token, over
    every response scored (a pair's chosen and rejected both), as `rewardlab.scoring` computes them. Hong et al.
    (ICML 2025, arXiv 2505.07271, the BSR paper) name a wide spread of these norms as the main source of reward
    over-optimization; the in-distribution `test` set's values are the ones the reports read.

    A benchmark set (RewardBench 2, RM-Bench) is summarized by its own rule
    (`rewardlab.evalsets.summarize_benchmark`): `accuracy` is the benchmark's score, its rows are the overall
    score ("all") and its parts (RewardBench 2 sections; RM-Bench easy/normal/hard and domains), `n` counts
    prompts and the `benchmark` column names it. MLflow gets `<set>.<metric>` for every set's overall row and,
    for a benchmark set, `<set>.score` and `<set>.<part>.score`.
    """
    from rewardlab.evalsets import summarize_benchmark
    from rewardlab.metrics import kendall_tau, summarize_scores

    cfg = OodEvalConfig.from_dict(parameters.get("ood_eval"), "ood_eval")
    identity = run_identity(parameters)

    tables = []
    for name, group in scores.groupby("eval_set", sort=False):
        benchmark = _benchmark_of(group)
        if benchmark is not None:
            table = summarize_benchmark(group, benchmark, n_boot=cfg.bootstrap_samples, seed=cfg.seed)
        else:
            has_subsets = "subset" in group.columns and group["subset"].notna().any()
            table = summarize_scores(group, subset_col="subset" if has_subsets else None,
                                     n_boot=cfg.bootstrap_samples, seed=cfg.seed)
        table.insert(0, "eval_set", name)
        table["benchmark"] = benchmark
        tables.append(table)
    metrics = pd.concat(tables, ignore_index=True)
    taus = {
        name: kendall_tau(group["proxy"].to_numpy(), group["gold"].to_numpy())
        for name, group in response_scores.groupby("eval_set", sort=False)
    }
    metrics["kendall_tau"] = metrics["eval_set"].map(taus)
    if "truncated" in scores.columns:
        metrics["truncated_pairs"] = metrics["eval_set"].map(scores.groupby("eval_set")["truncated"].sum())
    norm_stats = {name: hidden_norm_stats(group) for name, group in scores.groupby("eval_set", sort=False)}
    overall = _overall_rows(metrics)
    for column in HIDDEN_NORM_COLUMNS:
        # Over the whole set only: a subset's row would otherwise show the set's spread as its own.
        metrics[column] = metrics["eval_set"].map({name: stats[column] for name, stats in norm_stats.items()})
        metrics.loc[~overall, column] = np.nan
    metrics.insert(0, "run_label", identity.label)
    # Reports group runs by variant: its configuration is part of it, so different configurations never mix.
    metrics.insert(1, "variant", identity.variant_label)
    metrics.insert(2, "noise", identity.noise_rate)
    metrics.insert(3, "seed", identity.seed)

    flat = {}
    for _, row in metrics[_overall_rows(metrics)].iterrows():
        for column in ("accuracy", "ci_low", "ci_high", "ece", "length_spearman", "kendall_tau", "norm_dispersion",
                       "truncated_pairs", *HIDDEN_NORM_COLUMNS):
            if column in row and pd.notna(row[column]):
                flat[f"{row['eval_set']}.{column}"] = row[column]
    benchmark_rows = metrics[metrics["benchmark"].notna()]
    for _, row in benchmark_rows.iterrows():
        part = "" if row["subset"] == "all" else f"{row['subset']}."
        flat[f"{row['eval_set']}.{part}score"] = row["accuracy"]
    return metrics, metrics_for_mlflow(flat), {identity.label: metrics}


def hidden_norm_stats(scored: pd.DataFrame) -> dict[str, float]:
    """Mean, population std and coefficient of variation (`rewardlab.metrics.norm_dispersion`) of the hidden-state
    norms of one scored set: both responses of every pair (``hidden_norm_chosen``, ``hidden_norm_rejected``), or
    every response of a benchmark set (``hidden_norm``). NaNs when the set has no norms."""
    from rewardlab.metrics import norm_dispersion

    columns = [c for c in ("hidden_norm_chosen", "hidden_norm_rejected", "hidden_norm") if c in scored.columns]
    norms = np.concatenate([scored[c].to_numpy(dtype=np.float64) for c in columns]) if columns else np.array([])
    norms = norms[~np.isnan(norms)]
    if norms.size == 0:
        return dict.fromkeys(HIDDEN_NORM_COLUMNS, float("nan"))
    return {"hidden_norm_mean": float(norms.mean()), "hidden_norm_std": float(norms.std()),
            "hidden_norm_cv": norm_dispersion(norms)}


def _benchmark_of(group: pd.DataFrame) -> str | None:
    """The benchmark whose rule scores this set's rows, None for a pair set."""
    if "benchmark" not in group.columns:
        return None
    names = group["benchmark"].dropna().unique()
    if len(names) > 1:
        raise ValueError(f"evaluation set {group['eval_set'].iloc[0]!r} mixes benchmarks {sorted(names)}")
    return str(names[0]) if len(names) else None


def compare_runs(results_by_run: dict[str, Callable[[], pd.DataFrame]]) -> tuple[str, Any]:
    """One table over every run evaluated so far: variants as rows, eval sets as columns, mean and spread over
    seeds; below it, when a benchmark set was evaluated, one more table of its parts (columns `<set>/<part>`).
    The plot shows the same: overall scores, and the parts in a second panel."""
    from rewardlab.report import (RESULT_COLUMNS, benchmark_part_results, comparison_markdown, comparison_table,
                                  plot_comparison)

    results = pd.concat([load() for load in results_by_run.values()], ignore_index=True)
    parts = benchmark_part_results(results)
    results = results[_overall_rows(results)]
    markdown = comparison_markdown(comparison_table(results[RESULT_COLUMNS]))
    if not parts.empty:
        markdown += "\nBenchmark parts (RewardBench 2 sections; RM-Bench easy/normal/hard and domains):\n\n"
        markdown += comparison_markdown(comparison_table(parts[RESULT_COLUMNS]))
    return markdown, plot_comparison(results, parts=None if parts.empty else parts)


def _overall_rows(metrics: pd.DataFrame) -> pd.Series:
    if "subset" not in metrics.columns:
        return pd.Series(True, index=metrics.index)
    return metrics["subset"].isna() | (metrics["subset"] == "all")
