"""OOD evaluation nodes: score a saved reward model on every evaluation set and compare runs."""

from __future__ import annotations

import logging
from typing import Any, Callable

import pandas as pd

from rewardlab.config import OodEvalConfig
from rewardlab.pipelines.tracking import metrics_for_mlflow, to_accelerator
from rewardlab.run_identity import run_identity

logger = logging.getLogger(__name__)

WORLD_SETS = ("test", "ood_prompt", "ood_response", "ood_both")


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
    """Rewards for every pair of every set, and proxy rewards for every world response (vs its gold)."""
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
        logger.info("Scoring %d pairs of '%s'", len(pairs), name)
        scores = score_pairs(model, tokenizer, pairs, **layout)
        scores.insert(0, "eval_set", name)
        if "subset" in pairs.columns:
            scores["subset"] = pairs.set_index("id").loc[scores["id"], "subset"].to_numpy()
        scored.append(scores)
    responses = eval_responses.copy()
    responses["proxy"] = score_responses(
        model, tokenizer, responses["prompt"].tolist(), responses["response"].tolist(), **layout
    )
    return pd.concat(scored, ignore_index=True), responses


def summarize_eval(
    scores: pd.DataFrame, response_scores: pd.DataFrame, parameters: dict[str, Any]
) -> tuple[pd.DataFrame, dict, dict[str, pd.DataFrame]]:
    """Per set (and subset): accuracy with a bootstrap CI, ECE, reward stats, norm dispersion, Kendall tau,
    and how many pairs were cut to `max_length`; one result file per run label."""
    from rewardlab.metrics import kendall_tau, summarize_scores

    cfg = OodEvalConfig.from_dict(parameters.get("ood_eval"), "ood_eval")
    identity = run_identity(parameters)

    tables = []
    for name, group in scores.groupby("eval_set", sort=False):
        has_subsets = "subset" in group.columns and group["subset"].notna().any()
        table = summarize_scores(group, subset_col="subset" if has_subsets else None,
                                 n_boot=cfg.bootstrap_samples, seed=cfg.seed)
        table.insert(0, "eval_set", name)
        tables.append(table)
    metrics = pd.concat(tables, ignore_index=True)
    taus = {
        name: kendall_tau(group["proxy"].to_numpy(), group["gold"].to_numpy())
        for name, group in response_scores.groupby("eval_set", sort=False)
    }
    metrics["kendall_tau"] = metrics["eval_set"].map(taus)
    if "truncated" in scores.columns:
        metrics["truncated_pairs"] = metrics["eval_set"].map(scores.groupby("eval_set")["truncated"].sum())
    metrics.insert(0, "run_label", identity.label)
    # Reports group runs by variant: its configuration is part of it, so different configurations never mix.
    metrics.insert(1, "variant", identity.variant_label)
    metrics.insert(2, "noise", identity.noise_rate)
    metrics.insert(3, "seed", identity.seed)

    overall = metrics[_overall_rows(metrics)]
    flat = {}
    for _, row in overall.iterrows():
        for column in ("accuracy", "ci_low", "ci_high", "ece", "kendall_tau", "norm_dispersion", "truncated_pairs"):
            if column in row and pd.notna(row[column]):
                flat[f"{row['eval_set']}.{column}"] = row[column]
    return metrics, metrics_for_mlflow(flat), {identity.label: metrics}


def compare_runs(results_by_run: dict[str, Callable[[], pd.DataFrame]]) -> tuple[str, Any]:
    """One table over every run evaluated so far: variants as rows, eval sets as columns, mean and spread over seeds."""
    from rewardlab.report import comparison_markdown, comparison_table, plot_comparison

    results = pd.concat([load() for load in results_by_run.values()], ignore_index=True)
    results = results[_overall_rows(results)]
    table = comparison_table(results[["variant", "noise", "seed", "eval_set", "accuracy"]])
    return comparison_markdown(table), plot_comparison(results)


def _overall_rows(metrics: pd.DataFrame) -> pd.Series:
    if "subset" not in metrics.columns:
        return pd.Series(True, index=metrics.index)
    return metrics["subset"].isna() | (metrics["subset"] == "all")
