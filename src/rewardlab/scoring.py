"""Batched, length-sorted, no-grad scoring of preference pairs and of single responses.

`encode_prompt_response` is also how training tokenizes, so a model is scored on exactly the token layout
it was trained on: prompt and response tokenized separately, BOS in front, prompt cut from the left.

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

logger = logging.getLogger(__name__)


def _bos_prefix(tokenizer, prompt_text: str, prompt_ids: list[int]) -> list[int]:
    """[bos] unless the tokenizer has none or the (e.g. chat-template rendered) prompt already starts with it."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return []
    bos_text = getattr(tokenizer, "bos_token", None)
    if (prompt_ids and prompt_ids[0] == bos_id) or (bos_text and prompt_text.startswith(bos_text)):
        return []
    return [bos_id]


def assemble_prompt_response(prefix: list[int], prompt_ids: list[int], response_ids: list[int],
                             max_length: int) -> tuple[list[int], list[int]]:
    """prefix + prompt + response, cut to max_length: prompt tokens go first (from the left), then the
    response's tail. The prefix (BOS) stays unless max_length leaves no room beside it."""
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    prefix = list(prefix) if max_length > len(prefix) else []
    room = max_length - len(prefix)
    response_ids = list(response_ids)[:room]
    prompt_room = room - len(response_ids)
    prompt_ids = list(prompt_ids)[len(prompt_ids) - prompt_room:] if prompt_room > 0 else []
    input_ids = list(prefix) + prompt_ids + response_ids
    if not input_ids:
        raise ValueError("prompt and response are both empty: nothing to score")
    response_mask = [0] * (len(prefix) + len(prompt_ids)) + [1] * len(response_ids)
    return input_ids, response_mask


def encode_prompt_response(tokenizer, prompt_text: str, response_text: str,
                           max_length: int) -> tuple[list[int], list[int]]:
    """(input_ids, response_mask) for prompt_text + response_text, tokenized as two separate pieces."""
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(response_text, add_special_tokens=False)["input_ids"]
    return assemble_prompt_response(_bos_prefix(tokenizer, prompt_text, prompt_ids), prompt_ids, response_ids,
                                    max_length)


def encode_prompt_responses(tokenizer, prompt_texts: Sequence[str], response_texts: Sequence[str],
                            max_length: int) -> list[tuple[list[int], list[int]]]:
    """Many `encode_prompt_response` calls with one batched tokenizer call per side; identical results."""
    if len(prompt_texts) != len(response_texts):
        raise ValueError(f"{len(prompt_texts)} prompts for {len(response_texts)} responses")
    if not prompt_texts:
        return []
    prompt_ids = tokenizer(list(prompt_texts), add_special_tokens=False)["input_ids"]
    response_ids = tokenizer(list(response_texts), add_special_tokens=False)["input_ids"]
    return [
        assemble_prompt_response(_bos_prefix(tokenizer, text, p_ids), p_ids, r_ids, max_length)
        for text, p_ids, r_ids in zip(prompt_texts, prompt_ids, response_ids)
    ]


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


def _pad_id(tokenizer) -> int:
    for attribute in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attribute, None)
        if value is not None:
            return int(value)
    return 0  # masked out by the attention mask, so any in-vocabulary id does


def _padded_inputs(sequences: list[list[int]], pad_id: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def _packed_inputs(sequences: list[list[int]]) -> dict[str, torch.Tensor]:
    """One row, positions restarting at 0 for each sequence, rewards read at each sequence's last token."""
    lengths = torch.tensor([len(ids) for ids in sequences], dtype=torch.long)
    return {
        "input_ids": torch.tensor([[t for ids in sequences for t in ids]], dtype=torch.long),
        "position_ids": torch.tensor([[p for ids in sequences for p in range(len(ids))]], dtype=torch.long),
        "last_token_index": torch.cumsum(lengths, dim=0) - 1,
    }


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


def score_encoded(model, encoded: list[tuple[list[int], list[int]]], pad_id: int, batch_size: int = 32,
                  progress: bool = True, desc: str = "scoring", packing: bool = False,
                  max_tokens: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Rewards and last-token hidden-state norms for pre-tokenized sequences, in input order.

    `max_tokens` bounds the tokens of a batch (the packed row's length; a padded batch's real tokens).
    `packing` falls back to padded batches for a model that cannot keep packed sequences apart.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    n = len(encoded)
    rewards = np.zeros(n, dtype=np.float64)
    norms = np.zeros(n, dtype=np.float64)
    if n == 0:
        return rewards, norms
    if packing and not getattr(model, "supports_packing", lambda: False)():
        logger.warning("Packed scoring is not possible here (%s); scoring padded batches instead.",
                       getattr(model, "packing_problem", lambda: "the model cannot read packed rows")())
        packing = False
    # Longest first: similar lengths share a batch (little padding) and memory peaks on the first batch.
    order = sorted(range(n), key=lambda i: -len(encoded[i][0]))
    batches = _batches(order, [len(ids) for ids, _ in encoded], batch_size, max_tokens)
    device = _model_device(model)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for batch in tqdm(batches, desc=desc, disable=not progress):
                sequences = [encoded[index][0] for index in batch]
                inputs = _packed_inputs(sequences) if packing else _padded_inputs(sequences, pad_id)
                out = model(**{key: value.to(device) for key, value in inputs.items()})
                rewards[batch] = out.rewards.float().cpu().numpy()
                norms[batch] = out.last_hidden.float().norm(dim=-1).cpu().numpy()
    finally:
        model.train(was_training)
    return rewards, norms


def score_pairs(model, tokenizer, pairs_df: pd.DataFrame, batch_size: int = 32, max_length: int = 512,
                progress: bool = True, packing: bool = False, max_tokens: int | None = None) -> pd.DataFrame:
    """Per pair: id, reward_chosen, reward_rejected, hidden_norm_chosen, hidden_norm_rejected (input order)."""
    from rewardlab.schema import pair_texts

    missing = [c for c in ("id", "prompt", "chosen", "rejected") if c not in pairs_df.columns]
    if missing:
        raise ValueError(f"pairs frame lacks columns {missing}")
    prompts, responses = [], []
    for side in ("chosen", "rejected"):
        for prompt, response in zip(pairs_df["prompt"], pairs_df[side]):
            prompt_text, response_text = pair_texts(prompt, response, tokenizer)
            prompts.append(prompt_text)
            responses.append(response_text)
    encoded = encode_prompt_responses(tokenizer, prompts, responses, max_length)
    rewards, norms = score_encoded(model, encoded, _pad_id(tokenizer), batch_size, progress, desc="scoring pairs",
                                   packing=packing, max_tokens=max_tokens)
    n = len(pairs_df)
    return pd.DataFrame({
        "id": pairs_df["id"].to_numpy(),
        "reward_chosen": rewards[:n],
        "reward_rejected": rewards[n:],
        "hidden_norm_chosen": norms[:n],
        "hidden_norm_rejected": norms[n:],
    })


def score_responses(model, tokenizer, prompts: Sequence, responses: Sequence, batch_size: int = 32,
                    max_length: int = 512, progress: bool = True, packing: bool = False,
                    max_tokens: int | None = None) -> np.ndarray:
    """Reward of each (prompt, response), in input order; prompts/responses plain or conversational."""
    from rewardlab.schema import pair_texts

    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    texts = [pair_texts(prompt, response, tokenizer) for prompt, response in zip(prompts, responses)]
    encoded = encode_prompt_responses(tokenizer, [t[0] for t in texts], [t[1] for t in texts], max_length)
    rewards, _ = score_encoded(model, encoded, _pad_id(tokenizer), batch_size, progress, desc="scoring responses",
                               packing=packing, max_tokens=max_tokens)
    return rewards
