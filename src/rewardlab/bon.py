"""Best-of-n sampling against a proxy reward, scored by a gold reward (reward over-optimization curves).

The policy draws N samples per prompt once; best-of-n for every n <= N is then evaluated with the
unbiased estimator over all N samples (Gao et al., 2022), instead of drawing fresh n-subsets, so each
curve is a smooth, exact expectation given the samples.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from rewardlab.encoding import pad_id, padded_batch

CURVE_COLUMNS = ["variant", "n", "kl", "sqrt_kl", "proxy_raw", "gold_raw", "proxy", "gold"]
PEAK_COLUMNS = ["variant", "n_at_peak", "kl_at_peak", "gold_at_peak", "gold_at_max_n", "gold_drop", "overoptimized"]


# ---------------------------------------------------------------------------------------------------------
# Sampling


def _sample_seed(seed: int, prompt_idx: int, sample_idx: int) -> int:
    return int(np.random.SeedSequence([seed, prompt_idx, sample_idx]).generate_state(1, dtype=np.uint64)[0] >> 1)


class _PerSampleSampler(LogitsProcessor):
    """Draws each row's next token from that row's own torch.Generator and returns a one-hot mask.

    Each sample's random stream depends only on (seed, prompt_idx, sample_idx), never on which other
    samples share its batch, so the samples do not depend on the batch size (up to floating-point
    differences in the logits). Temperature and nucleus (top-p) filtering are applied here; generate's
    own sampling then picks the only token left with probability one.
    """

    def __init__(self, generators: list[torch.Generator], temperature: float, top_p: float):
        self.generators = generators
        self.temperature = temperature
        self.top_p = top_p

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        logits = scores.float()
        if self.temperature == 0:
            tokens = logits.argmax(dim=-1)
        else:
            probs = torch.softmax(logits / self.temperature, dim=-1)
            if self.top_p < 1.0:
                sorted_probs, order = probs.sort(dim=-1, descending=True)
                # Keep the smallest prefix whose mass reaches top_p (always at least the top token).
                outside = (sorted_probs.cumsum(dim=-1) - sorted_probs) >= self.top_p
                sorted_probs = sorted_probs.masked_fill(outside, 0.0)
                probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
            cdf = probs.cumsum(dim=-1)
            draws = torch.tensor([torch.rand((), generator=g).item() for g in self.generators], dtype=cdf.dtype)
            targets = (draws.to(cdf.device) * cdf[:, -1]).unsqueeze(-1)
            tokens = torch.searchsorted(cdf, targets, right=True).squeeze(-1).clamp_(max=cdf.shape[-1] - 1)
        one_hot = torch.full_like(scores, float("-inf"))
        one_hot.scatter_(-1, tokens.unsqueeze(-1), 0.0)
        return one_hot


def _prompt_token_ids(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    encoded = tokenizer(list(prompts), add_special_tokens=True)["input_ids"]
    for i, ids in enumerate(encoded):
        if not ids:
            if tokenizer.bos_token_id is None:
                raise ValueError(f"prompt {i} is empty and the tokenizer has no bos token to start from")
            encoded[i] = [tokenizer.bos_token_id]
    return encoded


def sample_responses(
    model,
    tokenizer,
    prompts: Sequence[str],
    n: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_p: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> pd.DataFrame:
    """Draw ``n`` responses per prompt from a causal LM with batched, KV-cached generation.

    Prompts are left-padded (so every row's next token sits at the last position), batched by length,
    and generated with ``model.generate(do_sample=True, use_cache=True)``. Sample ``(p, s)`` uses a
    torch.Generator seeded from ``(seed, p, s)``, so the same seed gives the same samples whatever the
    batch size or the order of work. ``temperature=0`` is greedy decoding. Responses are decoded without
    the prompt, stopped at the first eos, with special tokens removed. Returns one row per sample with
    columns prompt_idx, sample_idx, prompt, response, response_tokens (generated tokens before eos),
    ordered by prompt then sample.
    """
    from tqdm.auto import tqdm

    if n < 1 or max_new_tokens < 1 or batch_size < 1:
        raise ValueError(f"n, max_new_tokens and batch_size must be positive (got {n}, {max_new_tokens}, {batch_size})")
    if temperature < 0 or not 0.0 < top_p <= 1.0:
        raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1 (got {temperature}, {top_p})")
    eos_id = tokenizer.eos_token_id
    pad_token_id = pad_id(tokenizer, required=True)
    prompt_ids = _prompt_token_ids(tokenizer, prompts)
    # Longest prompts first, so the rows of a batch need little padding.
    jobs = sorted(((p, s) for p in range(len(prompts)) for s in range(n)), key=lambda j: -len(prompt_ids[j[0]]))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    rows = []
    try:
        for start in tqdm(range(0, len(jobs), batch_size), desc="sampling", disable=not progress):
            batch = jobs[start : start + batch_size]
            inputs = padded_batch([prompt_ids[p] for p, _ in batch], pad_token_id, side="left")
            width = inputs["input_ids"].shape[1]
            generators = [torch.Generator().manual_seed(_sample_seed(seed, p, s)) for p, s in batch]
            with torch.no_grad():
                output = model.generate(
                    input_ids=inputs["input_ids"].to(device),
                    attention_mask=inputs["attention_mask"].to(device),
                    logits_processor=LogitsProcessorList([_PerSampleSampler(generators, temperature, top_p)]),
                    do_sample=True,
                    temperature=1.0,
                    top_k=0,
                    top_p=1.0,
                    max_new_tokens=max_new_tokens,
                    use_cache=True,
                    pad_token_id=pad_token_id,
                    eos_token_id=eos_id,
                )
            generated = output[:, width:].cpu().tolist()
            for (p, s), tokens in zip(batch, generated):
                if eos_id is not None and eos_id in tokens:
                    tokens = tokens[: tokens.index(eos_id)]
                response = tokenizer.decode(tokens, skip_special_tokens=True)
                rows.append((p, s, prompts[p], response, len(tokens)))
    finally:
        model.train(was_training)
    frame = pd.DataFrame(rows, columns=["prompt_idx", "sample_idx", "prompt", "response", "response_tokens"])
    return frame.sort_values(["prompt_idx", "sample_idx"], ignore_index=True)


# ---------------------------------------------------------------------------------------------------------
# Identity of a sampling: the same fingerprint means the same samples

# Files up to this size are hashed whole. Larger ones (a real model's weights: gigabytes, hashed at every run)
# by size, modification time and their first and last MiB: a changed or replaced file still changes the key,
# a copied one (new mtime) only costs one fresh sampling.
_WHOLE_HASH_LIMIT = 64 * 2**20
_EDGE_BYTES = 2**20
# What `sample_responses` draws with: a change to any of them can change the samples.
_SAMPLER_PARTS = ("_sample_seed", "_PerSampleSampler", "_prompt_token_ids", "sample_responses", "pad_id",
                  "padded_batch")


def sampling_fingerprint(policy_dir: str | Path, prompts: Sequence[str], settings: Mapping[str, object]) -> str:
    """A key for what ``sample_responses`` would return: equal keys, equal samples.

    It covers the policy's files (``policy_dir``: config, weights, tokenizer), the prompts in order, the
    ``settings`` given (the sampling parameters and how the policy is loaded), the sampler's own code, the
    versions of torch, transformers and numpy, and the device that samples (floating-point results differ
    between devices). Any difference gives another key, so reused samples are those a fresh sampling gives.
    """
    import transformers

    code = "".join(inspect.getsource(globals()[name]) for name in _SAMPLER_PARTS)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    identity = {
        "policy": _directory_digest(Path(policy_dir)),
        "prompts": hashlib.sha256(json.dumps(list(prompts), ensure_ascii=False).encode()).hexdigest(),
        "settings": dict(sorted(settings.items())),
        "sampler": hashlib.sha256(code.encode()).hexdigest(),
        "libraries": [torch.__version__, transformers.__version__, np.__version__],
        "device": device,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:32]


def _directory_digest(directory: Path) -> str:
    if not directory.is_dir():
        raise ValueError(f"policy directory '{directory}' does not exist")
    digest = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(directory).as_posix()}\0{stat.st_size}\0".encode())
        with open(path, "rb") as handle:
            if stat.st_size <= _WHOLE_HASH_LIMIT:
                digest.update(hashlib.sha256(handle.read()).digest())
                continue
            digest.update(f"{stat.st_mtime_ns}\0".encode() + handle.read(_EDGE_BYTES))
            handle.seek(-_EDGE_BYTES, os.SEEK_END)
            digest.update(handle.read(_EDGE_BYTES))
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------------------
# Best-of-n estimator


def kl_bon(n) -> np.ndarray | float:
    """Analytic KL(best-of-n policy || base policy) = log n - (n - 1) / n."""
    n_arr = np.asarray(n, dtype=np.float64)
    if np.any(n_arr < 1):
        raise ValueError(f"n must be >= 1, got {n}")
    kl = np.log(n_arr) - (n_arr - 1.0) / n_arr
    return float(kl) if kl.ndim == 0 else kl


def bon_rank_weights(n_total: int, n: int) -> np.ndarray:
    """P(the sample of ascending rank i is the best of a uniformly random n-subset), i = 1..N.

    Equal to C(i-1, n-1) / C(N, n); computed by the ratio recurrence w_{i-1} = w_i (i-n)/(i-1) from
    w_N = n/N, which stays in floating point for any N.
    """
    if not 1 <= n <= n_total:
        raise ValueError(f"n must be in [1, {n_total}], got {n}")
    weights = np.zeros(n_total)
    ranks = np.arange(n, n_total + 1, dtype=np.float64)  # ranks with non-zero weight
    ratios = (ranks[1:] - n) / (ranks[1:] - 1.0)  # w_{i-1}/w_i for i = n+1..N
    tail = np.concatenate([np.cumprod(ratios[::-1])[::-1], [1.0]])
    weights[n - 1 :] = tail * (n / n_total)
    return weights


def bon_expected_scores(proxy, gold, ns: Iterable[int]) -> pd.DataFrame:
    """Expected proxy and gold score of the best-of-n sample (chosen by proxy), averaged over prompts.

    ``proxy`` and ``gold`` are [M prompts, N samples]. For each prompt the samples are ranked by proxy
    score; ties are broken by sample index (of equal proxy scores, the later sample counts as higher),
    which is the rule ``argmax`` over (proxy, index) pairs would use. The expectation over all
    n-subsets of the N samples weights rank i by C(i-1, n-1)/C(N, n). Returns columns n, proxy, gold.
    """
    proxy = np.asarray(proxy, dtype=np.float64)
    gold = np.asarray(gold, dtype=np.float64)
    if proxy.ndim != 2 or proxy.shape != gold.shape:
        raise ValueError(f"proxy and gold must both be [prompts, samples]; got {proxy.shape} and {gold.shape}")
    order = np.argsort(proxy, axis=1, kind="stable")  # stable: equal scores stay in sample order
    proxy_sorted = np.take_along_axis(proxy, order, axis=1)
    gold_sorted = np.take_along_axis(gold, order, axis=1)
    n_total = proxy.shape[1]
    rows = []
    for n in sorted({int(v) for v in ns}):
        weights = bon_rank_weights(n_total, n)
        rows.append((n, float((proxy_sorted @ weights).mean()), float((gold_sorted @ weights).mean())))
    return pd.DataFrame(rows, columns=["n", "proxy", "gold"])


def default_ns(n_total: int, points: int = 20) -> list[int]:
    """About ``points`` sample counts from 1 to N, evenly spaced in log n (always including 1 and N)."""
    grid = np.unique(np.round(np.logspace(0.0, math.log10(n_total), points)).astype(int))
    return sorted({1, n_total, *grid.tolist()})


def bon_curves(
    proxy_by_variant: Mapping[str, np.ndarray],
    gold: np.ndarray | Mapping[str, np.ndarray],
    ns: Iterable[int] | None = None,
) -> pd.DataFrame:
    """Tidy best-of-n curves, one per reward-model variant.

    ``proxy_by_variant`` maps a variant to its proxy scores [M, N] of the policy's samples; ``gold`` is
    the gold scores of the same samples [M, N] (shared) or a mapping per variant. Columns: variant, n,
    kl, sqrt_kl, proxy_raw, gold_raw (expected scores), proxy and gold (minus their n=1 value, so every
    curve starts at 0; n=1 is always evaluated).
    """
    frames = []
    for variant, proxy in proxy_by_variant.items():
        gold_scores = gold[variant] if isinstance(gold, Mapping) else gold
        proxy = np.asarray(proxy, dtype=np.float64)
        chosen_ns = {1, *(ns if ns is not None else default_ns(proxy.shape[1]))}
        scores = bon_expected_scores(proxy, gold_scores, chosen_ns)
        kl = kl_bon(scores["n"].to_numpy())
        frames.append(
            pd.DataFrame(
                {
                    "variant": variant,
                    "n": scores["n"],
                    "kl": kl,
                    "sqrt_kl": np.sqrt(kl),
                    "proxy_raw": scores["proxy"],
                    "gold_raw": scores["gold"],
                    "proxy": scores["proxy"] - scores["proxy"].iloc[0],
                    "gold": scores["gold"] - scores["gold"].iloc[0],
                }
            )
        )
    if not frames:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]


def gold_peak(curve_df: pd.DataFrame, rel_drop: float = 0.1, abs_drop: float = 1e-6) -> pd.DataFrame:
    """Where each variant's gold curve peaks, and whether it falls afterwards (over-optimization).

    ``gold_drop`` = gold at the peak minus gold at the largest n. A variant is ``overoptimized`` when
    the drop exceeds ``max(rel_drop * gain, abs_drop)``, where ``gain`` = gold at the peak minus gold at
    n = 1: the gold reward has given back more than 10% (by default) of what best-of-n gained, or, when
    it never gained, it fell at all (beyond numerical noise).
    """
    rows = []
    for variant, curve in curve_df.groupby("variant", sort=False):
        curve = curve.sort_values("n")
        peak = curve.loc[curve["gold"].idxmax()]
        gold_at_peak = float(peak["gold"])
        gold_last = float(curve["gold"].iloc[-1])
        gain = gold_at_peak - float(curve["gold"].iloc[0])
        drop = gold_at_peak - gold_last
        rows.append(
            (
                variant,
                int(peak["n"]),
                float(peak["kl"]),
                gold_at_peak,
                gold_last,
                drop,
                bool(drop > max(rel_drop * gain, abs_drop)),
            )
        )
    return pd.DataFrame(rows, columns=PEAK_COLUMNS)
