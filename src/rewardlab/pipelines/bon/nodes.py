"""Best-of-n nodes: sample from the policy, score with the proxy RM and the gold reward, KL curves."""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import pandas as pd

from rewardlab.pipelines.tracking import markdown_table, run_label, to_accelerator

logger = logging.getLogger(__name__)


def sample_policy(policy_path: str, prompts: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """N samples per prompt from the policy (batched, KV cache, seeded)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardlab.bon import sample_responses
    from rewardlab.modeling import lm_load_args

    model = to_accelerator(AutoModelForCausalLM.from_pretrained(policy_path, **lm_load_args(params, "bon")).eval())
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    chosen = prompts.head(int(params.get("num_prompts", len(prompts))))
    return sample_responses(
        model, tokenizer, chosen["prompt"].tolist(), n=int(params["num_samples"]),
        max_new_tokens=int(params.get("max_new_tokens", 64)), temperature=float(params.get("temperature", 1.0)),
        top_p=float(params.get("top_p", 1.0)), seed=int(params.get("seed", 0)),
        batch_size=int(params.get("batch_size", 64)),
    )


def score_samples(reward_model_path: str, samples: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Proxy (the trained RM) and gold scores for every sample."""
    from transformers import AutoTokenizer

    from rewardlab.modeling import lm_load_args, load_reward_model
    from rewardlab.scoring import score_responses
    from rewardlab.world import load_gold_reward

    model = to_accelerator(load_reward_model(reward_model_path, **lm_load_args(params, "bon")))
    tokenizer = AutoTokenizer.from_pretrained(reward_model_path)
    prompts, responses = samples["prompt"].tolist(), samples["response"].tolist()
    scored = samples.copy()
    scored["proxy"] = score_responses(model, tokenizer, prompts, responses,
                                      batch_size=int(params.get("score_batch_size", 64)),
                                      max_length=int(params.get("max_length", 512)),
                                      packing=bool(params.get("packing", False)),
                                      max_tokens=params.get("max_tokens_per_batch"))
    scored["gold"] = load_gold_reward(params.get("gold", "world")).score(prompts, responses)
    return scored


def best_of_n_curves(
    scores: pd.DataFrame, grm_params: dict[str, Any], params: dict[str, Any]
) -> tuple[pd.DataFrame, dict, dict[str, pd.DataFrame]]:
    """Expected proxy and gold score of the best-of-n choice for n = 1..N (unbiased over all N samples)."""
    from rewardlab.bon import bon_curves

    proxy = _matrix(scores, "proxy")
    gold = _matrix(scores, "gold")
    label = run_label(grm_params)
    curves = bon_curves({label: proxy}, gold, ns=range(1, proxy.shape[1] + 1))
    curves.insert(1, "base_variant", grm_params["variant"])
    curves.insert(2, "noise", float(grm_params.get("noise_rate", 0.0)))
    curves.insert(3, "seed", int(grm_params.get("seed", 0)))
    metrics = {}
    for _, row in curves.iterrows():
        step = int(row["n"])
        metrics.setdefault("gold", []).append({"value": float(row["gold_raw"]), "step": step})
        metrics.setdefault("proxy", []).append({"value": float(row["proxy_raw"]), "step": step})
    return curves, metrics, {label: curves}


def compare_bon(curves_by_run: dict[str, Callable[[], pd.DataFrame]]) -> tuple[Any, str]:
    """Gold and proxy against KL for every run so far, and where each variant's gold score peaks."""
    from rewardlab.bon import gold_peak
    from rewardlab.report import plot_bon_curves

    curves = pd.concat([load() for load in curves_by_run.values()], ignore_index=True)
    peaks = gold_peak(curves)
    return plot_bon_curves(curves, x="kl"), "# Best-of-n gold peaks\n\n" + markdown_table(peaks)


def _matrix(scores: pd.DataFrame, column: str) -> np.ndarray:
    """[prompts, samples] matrix of one score column."""
    return scores.pivot(index="prompt_idx", columns="sample_idx", values=column).to_numpy(dtype=float)
