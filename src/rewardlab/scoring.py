"""Batched, length-sorted, no-grad scoring of preference pairs and of single responses.

Inputs are encoded by `rewardlab.encoding`, as training encodes them: a pair's chosen and rejected share one
prompt cut, so a model is scored on exactly the token layout it was trained on.

Batches are padded by default. With `packing=True` (and a model whose attention keeps packed sequences apart,
`RewardModel.supports_packing`) each batch is one row of sequences laid end to end, at most `max_tokens` long:
no padding at all, the same rewards within float rounding.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from rewardlab.encoding import (DEFAULT_MIN_RESPONSE_TOKENS, encode_pairs, encode_responses, packed_batch, pad_id,
                                padded_batch)
from rewardlab.encoding import encode_prompt_response  # noqa: F401  (the scored layout, also importable from here)

logger = logging.getLogger(__name__)


def _batches(order: list[int], lengths: list[int], batch_size: int, max_tokens: int | None) -> list[list[int]]:
    """Consecutive runs of `order`: at most `batch_size` sequences and, when given, `max_tokens` tokens each
    (a sequence longer than the budget is a batch of its own)."""
    batches, current, tokens = [], [], 0
    for index in order:
        if current and (len(current) == batch_size or (max_tokens and tokens + lengths[index] > max_tokens)):
            batches.append(current)
            current, tokens = [], 0
        current.append(index)
        tokens += lengths[index]
    return batches + [current] if current else batches


def score_encoded(model, sequences: Sequence[Sequence[int]], pad_token_id: int, batch_size: int = 32,
                  progress: bool = True, desc: str = "scoring", packing: bool = False,
                  max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and last-token hidden-state norms for token-id sequences, in input order.

    `max_tokens` bounds the tokens of a batch (the packed row's length; a padded batch's real tokens).
    `packing` falls back to padded batches for a model that cannot keep packed sequences apart.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(sequences)
    rewards = np.zeros(n, dtype=np.float64)
    norms = np.zeros(n, dtype=np.float64)
    if n == 0:
        return rewards, norms
    if packing and not getattr(model, "supports_packing", lambda: False)():
        logger.warning("Packed scoring is not possible here (%s); scoring padded batches instead.",
                       getattr(model, "packing_problem", lambda: "the model cannot read packed rows")())
        packing = False
    lengths = [len(ids) for ids in sequences]
    # Longest first: similar lengths share a batch (little padding) and memory peaks on the first batch.
    order = sorted(range(n), key=lambda i: -lengths[i])
    batches = _batches(order, lengths, batch_size, max_tokens)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc=desc, disable=not progress):
                chosen = [sequences[index] for index in batch]
                inputs = packed_batch(chosen) if packing else padded_batch(chosen, pad_token_id)
                out = model(**{key: value.to(device) for key, value in inputs.items()})
                rewards[batch] = out.rewards.float().cpu().numpy()
                norms[batch] = out.last_hidden.float().norm(dim=-1).cpu().numpy()
    finally:
        model.train(was_training)
    return rewards, norms


def score_pairs(model, tokenizer, pairs_df: pd.DataFrame, batch_size: int = 32, max_length: int = 512,
                progress: bool = True, packing: bool = False, max_tokens: int | None = None, *,
                min_response_tokens: int = DEFAULT_MIN_RESPONSE_TOKENS) -> pd.DataFrame:
    """Per pair, in input order: id, reward_chosen, reward_rejected, hidden_norm_chosen, hidden_norm_rejected,
    and truncated (max_length cut the pair's prompt or a response; see `rewardlab.encoding`)."""
    missing = [c for c in ("id", "prompt", "chosen", "rejected") if c not in pairs_df.columns]
    if missing:
        raise ValueError(f"pairs frame lacks columns {missing}")
    encoded = encode_pairs(tokenizer, pairs_df["prompt"], pairs_df["chosen"], pairs_df["rejected"], max_length,
                           min_response_tokens=min_response_tokens)
    sequences = [pair.chosen_ids for pair in encoded] + [pair.rejected_ids for pair in encoded]
    rewards, norms = score_encoded(model, sequences, pad_id(tokenizer), batch_size, progress, desc="scoring pairs",
                                   packing=packing, max_tokens=max_tokens)
    n = len(pairs_df)
    return pd.DataFrame({
        "id": pairs_df["id"].to_numpy(),
        "reward_chosen": rewards[:n],
        "reward_rejected": rewards[n:],
        "hidden_norm_chosen": norms[:n],
        "hidden_norm_rejected": norms[n:],
        "truncated": np.array([pair.truncation.any for pair in encoded], dtype=bool),
    })


def score_responses(model, tokenizer, prompts: Sequence, responses: Sequence, batch_size: int = 32,
                    max_length: int = 512, progress: bool = True, packing: bool = False,
                    max_tokens: int | None = None, *,
                    min_response_tokens: int = DEFAULT_MIN_RESPONSE_TOKENS) -> np.ndarray:
    """Reward of each (prompt, response), in input order; prompts/responses plain or conversational."""
    encoded = encode_responses(tokenizer, prompts, responses, max_length, min_response_tokens=min_response_tokens)
    rewards, _ = score_encoded(model, [e.input_ids for e in encoded], pad_id(tokenizer), batch_size, progress,
                               desc="scoring responses", packing=packing, max_tokens=max_tokens)
    return rewards
