"""Scoring throughput: the project's batched, length-sorted scoring against a one-sequence-at-a-time loop.

Two workloads on a random-init Qwen2-style reward model and synthetic token pairs:
- preference pairs: `rewardlab.scoring.score_pairs` vs a loop that scores each pair's chosen and rejected
  response one at a time (batch of one, no padding);
- best-of-n: `rewardlab.scoring.score_responses` over n responses for each of several prompts vs the same loop.
Both workloads are also scored packed (`packing=True`: one row of sequences laid end to end per batch, at most
`--max-tokens` tokens, attention `--packed-attn`). Every path must give the same rewards (the largest
difference is printed); the ratios are batched over naive and packed over batched.

    python benchmarks/bench_score.py --model tiny               # CPU smoke check
    python benchmarks/bench_score.py --model qwen2-0.5b         # GPU (bf16, sdpa)
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from _bench_common import (
    MODELS,
    add_common_arguments,
    build_causal_lm,
    describe_environment,
    ids_to_text,
    pairs_frame,
    setup_device,
    synchronize,
    synthetic_pairs,
    word_tokenizer,
)

from rewardlab.encoding import encode_prompt_response
from rewardlab.modeling import RewardModel
from rewardlab.scoring import score_pairs, score_responses

# (pairs, prompts, responses per prompt) per model size
WORKLOADS = {"tiny": (256, 16, 16), "qwen2-0.5b": (512, 32, 16), "qwen2-1.5b": (512, 32, 16)}


def naive_scores(model, tokenizer, prompts: list[str], responses: list[str], max_length: int) -> np.ndarray:
    """One forward pass per (prompt, response): what a first script would do."""
    device = next(model.parameters()).device
    rewards = np.zeros(len(prompts))
    with torch.no_grad():
        for i, (prompt, response) in enumerate(zip(prompts, responses)):
            ids, _ = encode_prompt_response(tokenizer, prompt, response, max_length)
            rewards[i] = float(model(torch.tensor([ids], device=device)).rewards[0])
    return rewards


def timed(device, fn, repeats: int):
    """fn's result and its fastest wall time over `repeats` runs (device synchronized)."""
    best = float("inf")
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return out, best


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=sorted(MODELS), default="tiny")
    parser.add_argument("--pairs", type=int, default=None, help="preference pairs to score")
    parser.add_argument("--prompts", type=int, default=None, help="best-of-n prompts")
    parser.add_argument("--n", type=int, default=None, help="responses per best-of-n prompt")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--packed-attn", default=None, help="attention for packed scoring (default: --attn)")
    parser.add_argument("--max-tokens", type=int, default=8192, help="tokens per packed row at most")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each path; the fastest counts")
    parser.add_argument("--json", default=None)
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    n_pairs, n_prompts, n = WORKLOADS[args.model]
    n_pairs, n_prompts, n = args.pairs or n_pairs, args.prompts or n_prompts, args.n or n

    device, dtype = setup_device(args)
    size = MODELS[args.model]
    max_length = 4096
    tokenizer = word_tokenizer(size.vocab)
    model = RewardModel(build_causal_lm(size, device, dtype, args.attn, seed=args.seed)).to(device).eval()
    args.packed_attn = args.packed_attn or args.attn
    packed_model = model
    if args.packed_attn != args.attn:  # the same weights (same seed) under the other attention
        packed_model = RewardModel(build_causal_lm(size, device, dtype, args.packed_attn, seed=args.seed))
        packed_model.reward_head.load_state_dict(model.reward_head.state_dict())
        packed_model = packed_model.to(device).eval()
    if not packed_model.supports_packing():
        raise SystemExit(f"packed scoring: {packed_model.packing_problem()}")
    packed_args = {"progress": False, "packing": True, "max_tokens": args.max_tokens}
    print(f"bench_score: model {args.model}, {dtype}, attention {args.attn} (packed: {args.packed_attn}, at most "
          f"{args.max_tokens} tokens a row), batch size {args.batch_size}; {describe_environment(device)}; "
          f"fastest of {args.repeats} runs", flush=True)

    frame = pairs_frame(synthetic_pairs(n_pairs, size, seed=args.seed))
    bon_pairs = synthetic_pairs(n_prompts * n, size, seed=args.seed + 1)
    bon_prompts = [ids_to_text(bon_pairs[(i // n) * n].prompt) for i in range(n_prompts * n)]  # n per prompt
    bon_responses = [ids_to_text(p.chosen) for p in bon_pairs]

    # Warm-up: kernels, allocator and tokenizer caches, on a few items of each path.
    score_pairs(model, tokenizer, frame.iloc[:4], args.batch_size, max_length, progress=False)
    score_pairs(packed_model, tokenizer, frame.iloc[:4], args.batch_size, max_length, **packed_args)
    naive_scores(model, tokenizer, list(frame["prompt"][:2]), list(frame["chosen"][:2]), max_length)

    batched, batched_s = timed(device, lambda: score_pairs(model, tokenizer, frame, args.batch_size, max_length,
                                                           progress=False), args.repeats)
    prompts = list(frame["prompt"]) * 2
    responses = list(frame["chosen"]) + list(frame["rejected"])
    naive, naive_s = timed(device, lambda: naive_scores(model, tokenizer, prompts, responses, max_length),
                           args.repeats)
    pair_diff = float(np.abs(np.concatenate([batched["reward_chosen"], batched["reward_rejected"]]) - naive).max())
    packed, packed_s = timed(device, lambda: score_pairs(packed_model, tokenizer, frame, args.batch_size, max_length,
                                                         **packed_args), args.repeats)
    packed_diff = float(np.abs(np.concatenate([packed["reward_chosen"], packed["reward_rejected"]]) - naive).max())

    bon, bon_s = timed(device, lambda: score_responses(model, tokenizer, bon_prompts, bon_responses,
                                                       args.batch_size, max_length, progress=False), args.repeats)
    bon_naive, bon_naive_s = timed(device, lambda: naive_scores(model, tokenizer, bon_prompts, bon_responses,
                                                                max_length), args.repeats)
    bon_diff = float(np.abs(bon - bon_naive).max())
    bon_packed, bon_packed_s = timed(device, lambda: score_responses(
        packed_model, tokenizer, bon_prompts, bon_responses, args.batch_size, max_length, **packed_args),
        args.repeats)
    bon_packed_diff = float(np.abs(bon_packed - bon_naive).max())

    lines = [
        f"pairs: {n_pairs} ({2 * n_pairs} sequences)",
        f"  batched length-sorted (score_pairs): {n_pairs / batched_s:10.1f} pairs/s",
        f"  packed (score_pairs, packing=True):  {n_pairs / packed_s:10.1f} pairs/s",
        f"  naive one at a time:                 {n_pairs / naive_s:10.1f} pairs/s",
        f"ratio pairs/s batched vs naive: {naive_s / batched_s:.2f}x (largest reward difference {pair_diff:.2e})",
        f"ratio pairs/s packed vs batched: {batched_s / packed_s:.2f}x (largest reward difference vs naive "
        f"{packed_diff:.2e})",
        f"best-of-n: {n_prompts} prompts x {n} responses",
        f"  batched (score_responses):           {n_prompts * n / bon_s:10.1f} responses/s",
        f"  packed (packing=True):               {n_prompts * n / bon_packed_s:10.1f} responses/s",
        f"  naive one at a time:                 {n_prompts * n / bon_naive_s:10.1f} responses/s",
        f"ratio responses/s batched vs naive (best-of-n): {bon_naive_s / bon_s:.2f}x "
        f"(largest reward difference {bon_diff:.2e})",
        f"ratio responses/s packed vs batched (best-of-n): {bon_s / bon_packed_s:.2f}x "
        f"(largest reward difference vs naive {bon_packed_diff:.2e})",
    ]
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({
            "model": args.model, "dtype": str(dtype), "device": describe_environment(device),
            "attn": args.attn, "packed_attn": args.packed_attn, "max_tokens": args.max_tokens,
            "pairs_per_s": {"batched": n_pairs / batched_s, "packed": n_pairs / packed_s, "naive": n_pairs / naive_s},
            "bon_responses_per_s": {"batched": n_prompts * n / bon_s, "packed": n_prompts * n / bon_packed_s,
                                    "naive": n_prompts * n / bon_naive_s},
            "max_reward_difference": {"pairs": pair_diff, "pairs_packed": packed_diff, "bon": bon_diff,
                                      "bon_packed": bon_packed_diff},
            "summary": lines}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
