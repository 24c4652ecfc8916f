"""Best-of-n nodes: sample from the policy, score with the proxy RM and the gold reward, KL curves."""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

import numpy as np
import pandas as pd

from rewardlab.config import BonConfig
from rewardlab.pipelines.tracking import markdown_table, to_accelerator
from rewardlab.run_identity import run_identity

logger = logging.getLogger(__name__)


def sample_policy(
    policy_path: str,
    prompts: pd.DataFrame,
    params: dict[str, Any],
    cached_samples: dict[str, Callable[[], pd.DataFrame]],
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame], dict]:
    """N samples per prompt from the policy (batched, KV cache, seeded), drawn once per sampling fingerprint.

    ``cached_samples`` maps a fingerprint (``rewardlab.bon.sampling_fingerprint``: the policy's files, the
    prompts, the sampling settings, the sampler and its libraries) to the samples it gave. A known fingerprint
    is read back instead of sampled again; a new one is drawn and returned as the cache's new entry. The
    metrics say which happened.
    """
    from rewardlab.bon import sampling_fingerprint

    started = time.perf_counter()  # the fingerprint (hashing the policy's files) is part of what reuse costs
    cfg = BonConfig.from_dict(params, "bon")
    chosen = prompts.head(cfg.num_prompts)["prompt"].tolist()
    key = sampling_fingerprint(policy_path, chosen, _sampling_settings(cfg))
    if key in cached_samples:
        samples, new_entries = cached_samples[key](), {}
        logger.info("Best-of-n samples reused from the sample cache (%s)", key)
    else:
        samples = _draw_samples(policy_path, chosen, cfg)
        new_entries = {key: samples}
        logger.info("Best-of-n samples drawn and added to the sample cache (%s)", key)
    metrics = {
        "samples_reused": {"value": float(not new_entries), "step": 0},
        "sampling_seconds": {"value": time.perf_counter() - started, "step": 0},
    }
    return samples, new_entries, metrics


def _sampling_settings(cfg: BonConfig) -> dict[str, Any]:
    """Every setting the samples depend on. The batch size too: batches pad differently, and padding can move
    the logits by a rounding error, which can flip a draw."""
    return {
        "num_samples": cfg.num_samples, "max_new_tokens": cfg.max_new_tokens, "temperature": cfg.temperature,
        "top_p": cfg.top_p, "seed": cfg.seed, "batch_size": cfg.batch_size, **cfg.load_args(),
    }


def _draw_samples(policy_path: str, prompts: list[str], cfg: BonConfig) -> pd.DataFrame:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rewardlab.bon import sample_responses

    model = to_accelerator(AutoModelForCausalLM.from_pretrained(policy_path, **cfg.load_args()).eval())
    tokenizer = AutoTokenizer.from_pretrained(policy_path)
    return sample_responses(
        model, tokenizer, prompts, n=cfg.num_samples, max_new_tokens=cfg.max_new_tokens,
        temperature=cfg.temperature, top_p=cfg.top_p, seed=cfg.seed, batch_size=cfg.batch_size,
    )


def score_samples(reward_model_path: str, samples: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """Proxy (the trained RM) and gold scores for every sample."""
    from transformers import AutoTokenizer

    from rewardlab.modeling import load_reward_model
    from rewardlab.scoring import score_responses
    from rewardlab.world import load_gold_reward

    cfg = BonConfig.from_dict(params, "bon")
    model = to_accelerator(load_reward_model(reward_model_path, **cfg.load_args()))
    tokenizer = AutoTokenizer.from_pretrained(reward_model_path)
    prompts, responses = samples["prompt"].tolist(), samples["response"].tolist()
    scored = samples.copy()
    scored["proxy"] = score_responses(model, tokenizer, prompts, responses, batch_size=cfg.score_batch_size,
                                      max_length=cfg.max_length, packing=cfg.packing,
                                      max_tokens=cfg.max_tokens_per_batch,
                                      min_response_tokens=cfg.min_response_tokens)
    scored["gold"] = load_gold_reward(cfg.gold).score(prompts, responses)
    return scored


def best_of_n_curves(
    scores: pd.DataFrame, parameters: dict[str, Any]
) -> tuple[pd.DataFrame, dict, dict[str, pd.DataFrame]]:
    """Expected proxy and gold score of the best-of-n choice for n = 1..N (unbiased over all N samples)."""
    from rewardlab.bon import bon_curves

    proxy = _matrix(scores, "proxy")
    gold = _matrix(scores, "gold")
    identity = run_identity(parameters)
    curves = bon_curves({identity.label: proxy}, gold, ns=range(1, proxy.shape[1] + 1))
    curves.insert(1, "base_variant", identity.variant_label)
    curves.insert(2, "noise", identity.noise_rate)
    curves.insert(3, "seed", identity.seed)
    metrics = {}
    for _, row in curves.iterrows():
        step = int(row["n"])
        metrics.setdefault("gold", []).append({"value": float(row["gold_raw"]), "step": step})
        metrics.setdefault("proxy", []).append({"value": float(row["proxy_raw"]), "step": step})
    return curves, metrics, {identity.label: curves}


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
