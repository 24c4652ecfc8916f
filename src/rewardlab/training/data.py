"""Training data: tokenized pairs (encoded by `rewardlab.encoding`, as scoring encodes them), pair batches in
padded or packed layout, and a resumable batch order."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from rewardlab.encoding import (DEFAULT_MIN_RESPONSE_TOKENS, RowFieldError, Truncation, encode_pairs, packed_batch,
                                padded_batch)
from rewardlab.schema import PAIR_COLUMNS, DataValidationError


@dataclass(frozen=True)
class PairExample:
    """One tokenized preference pair; `index` is the row's position in the DataFrame it came from."""

    chosen_ids: tuple[int, ...]
    chosen_response_mask: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    rejected_response_mask: tuple[int, ...]
    margin: float
    index: int
    truncation: Truncation = Truncation()


def tokenize_pairs(pairs: pd.DataFrame, tokenizer, max_length: int, file: str = "<memory>", *,
                   min_response_tokens: int = DEFAULT_MIN_RESPONSE_TOKENS) -> list[PairExample]:
    """Tokenize every pair exactly as scoring does (`rewardlab.encoding.encode_pairs`)."""
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in pairs.columns]
    if missing:
        raise DataValidationError(f"{file}: pairs lack column(s) {missing}; expected {PAIR_COLUMNS}")
    try:
        encoded = encode_pairs(tokenizer, pairs["prompt"], pairs["chosen"], pairs["rejected"], max_length,
                               min_response_tokens=min_response_tokens)
    except RowFieldError as error:
        raise DataValidationError(f"{file}: {error}") from error
    margins = pairs["margin"] if "margin" in pairs.columns else [None] * len(pairs)
    return [
        PairExample(pair.chosen_ids, pair.chosen_response_mask, pair.rejected_ids, pair.rejected_response_mask,
                    float("nan") if margin is None or pd.isna(margin) else float(margin), row_number,
                    pair.truncation)
        for row_number, (pair, margin) in enumerate(zip(encoded, margins))
    ]


def truncation_counts(examples: Sequence[PairExample], prefix: str = "data.") -> dict[str, int]:
    """How many pairs max_length cut: at all, in the prompt, in a response (metric names under `prefix`)."""
    return {
        f"{prefix}pairs": len(examples),
        f"{prefix}truncated_pairs": sum(e.truncation.any for e in examples),
        f"{prefix}truncated_prompt_pairs": sum(e.truncation.prompt for e in examples),
        f"{prefix}truncated_response_pairs": sum(e.truncation.response for e in examples),
    }


def _sequences(examples: list[PairExample]) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    # Chosen sequences first, then rejected: rewards[:B] are chosen and rewards[B:] rejected.
    ids = [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
    masks = [e.chosen_response_mask for e in examples] + [e.rejected_response_mask for e in examples]
    return ids, masks


def _pair_fields(examples: list[PairExample]) -> dict[str, torch.Tensor]:
    return {
        "margins": torch.tensor([e.margin for e in examples], dtype=torch.float32),
        "indices": torch.tensor([e.index for e in examples], dtype=torch.long),
    }


def collate_padded(examples: list[PairExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of 2B sequences: `input_ids`, `attention_mask`, `response_mask` [2B, L]."""
    ids, masks = _sequences(examples)
    return {**padded_batch(ids, pad_token_id, masks), **_pair_fields(examples)}


def collate_packed(examples: list[PairExample]) -> dict[str, torch.Tensor]:
    """All 2B sequences in one row [1, T] with no padding (`rewardlab.encoding.packed_batch`, with
    `response_mask` and `sequence_ids`)."""
    return {**packed_batch(*_sequences(examples)), **_pair_fields(examples)}


def collate(examples: list[PairExample], packing: bool, pad_token_id: int) -> dict[str, torch.Tensor]:
    return collate_packed(examples) if packing else collate_padded(examples, pad_token_id)


def without_rejected_responses(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The batch with the rejected sequences' response masks cleared, in either layout.

    S(y) is summed over response-mask positions only, so the LM head then scores chosen responses alone
    (S(y_r) comes out 0): half the LM-head work for losses that never read S(y_r). Rewards are unchanged.
    """
    n_pairs = batch["indices"].shape[0]
    response_mask = batch["response_mask"].clone()
    if "sequence_ids" in batch:
        response_mask[batch["sequence_ids"] >= n_pairs] = 0
    else:
        response_mask[n_pairs:] = 0
    return {**batch, "response_mask": response_mask}


MODEL_INPUT_KEYS = ("input_ids", "attention_mask", "position_ids", "response_mask", "last_token_index",
                    "sequence_ids")


def model_inputs(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The keys of a collated batch that `RewardModel.forward` takes."""
    return {k: batch[k] for k in MODEL_INPUT_KEYS if k in batch}


@dataclass(frozen=True)
class BatchPlan:
    """Which pairs every rank sees at every micro-step, as a pure function of (seed, step).

    Epoch e visits the pairs in the order of a permutation seeded by (seed, e); optimizer step s takes the
    s-th consecutive global batch of that order (a trailing partial batch is dropped, and the next epoch's
    permutation visits those pairs again). Because nothing depends on earlier steps, a run resumed at
    step k sees exactly the batches an uninterrupted run sees from step k on.
    """

    num_examples: int
    per_device_batch_size: int
    num_processes: int = 1
    gradient_accumulation_steps: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        if self.num_examples < self.global_batch_size:
            raise ValueError(
                f"{self.num_examples} training pairs cannot fill one global batch of {self.global_batch_size} "
                f"(per_device_batch_size {self.per_device_batch_size} x num_processes {self.num_processes} x "
                f"gradient_accumulation_steps {self.gradient_accumulation_steps})"
            )

    @property
    def global_batch_size(self) -> int:
        return self.per_device_batch_size * self.num_processes * self.gradient_accumulation_steps

    @property
    def steps_per_epoch(self) -> int:
        return self.num_examples // self.global_batch_size

    def total_steps(self, num_epochs: int, max_steps: int | None = None) -> int:
        total = self.steps_per_epoch * int(num_epochs)
        return min(total, int(max_steps)) if max_steps else total

    def epoch_order(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([int(self.seed), int(epoch)]).permutation(self.num_examples)

    def global_batch(self, step: int) -> np.ndarray:
        epoch, position = divmod(int(step), self.steps_per_epoch)
        start = position * self.global_batch_size
        return self.epoch_order(epoch)[start : start + self.global_batch_size]

    def micro_batches(self, step: int, rank: int = 0) -> list[np.ndarray]:
        """This rank's micro-batches for `step`: micro-step m uses a contiguous slice of the global batch,
        split into contiguous per-rank shards, so any process count yields the same per-micro-step sets."""
        batch = self.global_batch(step)
        per_micro = self.per_device_batch_size * self.num_processes
        out = []
        for micro in range(self.gradient_accumulation_steps):
            chunk = batch[micro * per_micro : (micro + 1) * per_micro]
            out.append(chunk[rank * self.per_device_batch_size : (rank + 1) * self.per_device_batch_size])
        return out


def data_fingerprint(examples: list[PairExample]) -> str:
    """Hash of the tokenized training pairs: changing data, tokenizer or truncation changes it."""
    digest = hashlib.sha256()
    for e in examples:
        for part in (e.chosen_ids, e.chosen_response_mask, e.rejected_ids, e.rejected_response_mask):
            digest.update(np.asarray(part, dtype=np.int64).tobytes())
            digest.update(b"|")
        digest.update(np.float64(e.margin).tobytes())
    return digest.hexdigest()[:16]
