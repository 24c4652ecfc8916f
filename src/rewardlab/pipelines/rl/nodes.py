"""Policy optimization nodes: a policy trained against the proxy reward model (RLOO or GRPO), scored by the gold
reward on held-out prompts as it goes, and the reports over every run so far."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from rewardlab.pipelines.tracking import log_step_metrics, markdown_table, metrics_for_mlflow, set_run_tags
from rewardlab.run_identity import run_identity

logger = logging.getLogger(__name__)

# MLflow keys of the curves: `rl.<split>.<column>` (split train or eval), stepped by the training step.
METRIC_PREFIX = "rl"


def optimize_policy(
    policy_path: str,
    reward_model_path: str,
    train_pairs: pd.DataFrame,
    eval_prompts: pd.DataFrame,
    params: dict[str, Any],
    parameters: dict[str, Any],
) -> tuple[dict[str, Any], pd.DataFrame, dict, dict[str, pd.DataFrame]]:
    """Optimize the policy against the proxy reward model with the `rl` block ``params``; resumable from
    `rl.state_dir`/<run label>, the label of every block of ``parameters`` (`rewardlab.run_identity`).

    The training prompts are the distinct prompts of the reward model's training pairs (the distribution its
    rewards were learnt on), the evaluation prompts those of ``eval_prompts`` (`bon_prompts`), held out: a
    training prompt that is also an evaluation prompt is left out of training. Per-step curves reach the
    active MLflow run while training runs (`rl.train.gold`, `rl.eval.kl`, ...; a resumed run logs the restored
    steps first); the returned metrics are where the gold reward on held-out prompts peaks and ends.
    """
    from transformers import AutoTokenizer

    from rewardlab.config import RlPipelineConfig
    from rewardlab.rl.report import rl_gold_peaks, with_run_identity
    from rewardlab.rl.rewards import load_proxy_reward
    from rewardlab.rl.train import train_policy

    cfg = RlPipelineConfig.from_dict(params, "rl")
    identity = run_identity(parameters)
    set_run_tags(identity.tags())
    training, evaluation = split_prompts(train_pairs["prompt"], eval_prompts["prompt"],
                                         AutoTokenizer.from_pretrained(policy_path))
    state_dir = Path(cfg.state_dir) / identity.label
    logger.info("Optimizing the policy of run %s (%s, %d steps) on %d training prompts, evaluated on %d held-out "
                "prompts; resumable state in %s", identity.label, cfg.algorithm, cfg.steps, len(training),
                min(len(evaluation), cfg.num_eval_prompts), state_dir)

    def log_metrics(metrics: dict[str, float], step: int) -> None:
        log_step_metrics({f"{METRIC_PREFIX}.{key}": value for key, value in metrics.items()}, step)
        if "eval.gold" in metrics:  # the console's view of progress, at each evaluation
            logger.info("Step %d/%d: held-out gold %.4g, proxy %.4g, KL %.4g", step, cfg.steps, metrics["eval.gold"],
                        metrics.get("eval.proxy", float("nan")), metrics.get("eval.kl", float("nan")))

    proxy = load_proxy_reward(reward_model_path, cfg)
    model, policy_tokenizer, curves = train_policy(policy_path, proxy, training, evaluation, cfg, state_dir,
                                                   log_metrics=log_metrics)
    frame = with_run_identity(curves, run=identity.label, variant=identity.variant_label,
                              noise=identity.noise_rate, seed=identity.seed)
    return ({"model": model, "tokenizer": policy_tokenizer}, frame, peak_metrics(rl_gold_peaks(frame)),
            {identity.label: frame})


def compare_rl(curves_by_run: dict[str, Callable[[], pd.DataFrame]]) -> tuple[Any, str]:
    """Gold and proxy against KL for every run so far (held-out prompts), and where each run's gold peaks."""
    from rewardlab.rl.report import plot_rl_curves, rl_gold_peaks

    curves = pd.concat([load() for load in curves_by_run.values()], ignore_index=True)
    peaks = rl_gold_peaks(curves)
    table = markdown_table(peaks) if not peaks.empty else "No run has gold scores on held-out prompts yet.\n"
    return plot_rl_curves(curves), (
        "# Policy optimization: gold peaks\n\n"
        "The policy's gold reward on held-out prompts, per run: where it peaks (step, KL to the initial policy), "
        "where it ends, and whether it fell after its peak (by more than 10% of what it gained).\n\n" + table)


def split_prompts(train_prompts: Iterable[Any], eval_prompts: Iterable[Any], tokenizer: Any) -> tuple[list[str],
                                                                                                    list[str]]:
    """(training, evaluation) prompts as the policy reads them (`policy_prompts`); an evaluation prompt is held
    out of training. No prompt left on either side is bad data, named as such."""
    from rewardlab.schema import DataValidationError

    evaluation = policy_prompts(eval_prompts, tokenizer)
    held_out = set(evaluation)
    training = [prompt for prompt in policy_prompts(train_prompts, tokenizer) if prompt not in held_out]
    if not evaluation:
        raise DataValidationError("No evaluation prompt: every prompt of bon_prompts is empty")
    if not training:
        raise DataValidationError("No training prompt: every prompt of train_pairs is empty or an evaluation prompt")
    return training, evaluation


def policy_prompts(prompts: Iterable[Any], tokenizer: Any) -> list[str]:
    """Distinct non-empty prompts in order of first appearance, as the text the policy continues: plain text as
    it is, chat messages rendered with the policy's chat template up to where its reply starts, without the BOS
    token the template may write (the policy's tokenizer adds it), as `bon_prompts` holds them."""
    from rewardlab.schema import render_messages, to_python

    texts = []
    for prompt in prompts:
        prompt = to_python(prompt)
        if isinstance(prompt, list):
            prompt = render_messages(prompt, tokenizer, add_generation_prompt=True)
            bos = getattr(tokenizer, "bos_token", None)
            prompt = prompt.removeprefix(bos) if bos else prompt
        if isinstance(prompt, str) and prompt.strip():
            texts.append(prompt)
    return list(dict.fromkeys(texts))


def peak_metrics(peaks: pd.DataFrame) -> dict[str, dict[str, float]]:
    """One run's gold peak (`rewardlab.rl.report.rl_gold_peaks`) as kedro-mlflow metrics: `peak.step`,
    `peak.kl`, `peak.gold`, `end.step`, `end.kl`, `end.gold`, `gold_fell_after_peak` (1 or 0); none without
    a held-out evaluation."""
    if peaks.empty:
        return {}
    (row,) = peaks.itertuples(index=False)
    return metrics_for_mlflow({
        "peak.step": row.step_at_peak, "peak.kl": row.kl_at_peak, "peak.gold": row.gold_at_peak,
        "end.step": row.final_step, "end.kl": row.kl_at_end, "end.gold": row.gold_at_end,
        "gold_fell_after_peak": float(row.fell_after_peak),
    })
