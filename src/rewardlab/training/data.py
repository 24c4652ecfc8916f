"""Training data: tokenized pairs, padded and packed collation, and a resumable batch order."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from rewardlab.schema import PAIR_COLUMNS, DataValidationError, pair_texts
from rewardlab.scoring import encode_prompt_responses


@dataclass(frozen=True)
class PairExample:
    """One tokenized preference pair; `index` is the row's position in the DataFrame it came from."""

    chosen_ids: tuple[int, ...]
    chosen_response_mask: tuple[int, ...]
    rejected_ids: tuple[int, ...]
    rejected_response_mask: tuple[int, ...]
    margin: float
    index: int


def _as_int_tuple(values: Any) -> tuple[int, ...]:
    if isinstance(values, torch.Tensor):
        values = values.reshape(-1).tolist()
    return tuple(int(v) for v in values)


def tokenize_pairs(pairs: pd.DataFrame, tokenizer, max_length: int, file: str = "<memory>") -> list[PairExample]:
    """Tokenize every pair exactly as scoring does (`pair_texts`, then `encode_prompt_response(s)`)."""
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in pairs.columns]
    if missing:
        raise DataValidationError(f"{file}: pairs lack column(s) {missing}; expected {PAIR_COLUMNS}")
    texts = {side: [] for side in ("chosen", "rejected")}
    for row_number, (prompt, chosen, rejected) in enumerate(zip(pairs["prompt"], pairs["chosen"], pairs["rejected"])):
        for side, response in (("chosen", chosen), ("rejected", rejected)):
            try:
                texts[side].append(pair_texts(prompt, response, tokenizer))
            except ValueError as error:
                raise DataValidationError(f"{file}: row {row_number}, field '{side}': {error}") from error
    # One batched tokenizer call per side; identical to encode_prompt_response row by row.
    encoded = {side: encode_prompt_responses(tokenizer, [p for p, _ in texts[side]], [r for _, r in texts[side]],
                                             max_length) for side in texts}
    margins = pairs["margin"] if "margin" in pairs.columns else [None] * len(pairs)
    examples = []
    for row_number, margin in enumerate(margins):
        (c_ids, c_mask), (r_ids, r_mask) = encoded["chosen"][row_number], encoded["rejected"][row_number]
        margin = float("nan") if margin is None or pd.isna(margin) else float(margin)
        examples.append(PairExample(_as_int_tuple(c_ids), _as_int_tuple(c_mask), _as_int_tuple(r_ids),
                                    _as_int_tuple(r_mask), margin, row_number))
    return examples


def _sequences(examples: list[PairExample]) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    # Chosen sequences first, then rejected: rewards[:B] are chosen and rewards[B:] rejected.
    return [(e.chosen_ids, e.chosen_response_mask) for e in examples] + [
        (e.rejected_ids, e.rejected_response_mask) for e in examples
    ]


def _pair_fields(examples: list[PairExample]) -> dict[str, torch.Tensor]:
    return {
        "margins": torch.tensor([e.margin for e in examples], dtype=torch.float32),
        "indices": torch.tensor([e.index for e in examples], dtype=torch.long),
    }


def collate_padded(examples: list[PairExample], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch of 2B sequences: `input_ids`, `attention_mask`, `response_mask` [2B, L]."""
    sequences = _sequences(examples)
    length = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), length), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), length), dtype=torch.long)
    for row, (ids, mask) in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, : len(ids)] = 1
        response_mask[row, : len(ids)] = torch.tensor(mask, dtype=torch.long)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask,
            **_pair_fields(examples)}


def collate_packed(examples: list[PairExample]) -> dict[str, torch.Tensor]:
    """All 2B sequences concatenated into one row [1, T] with no padding.

    `position_ids` restart at 0 for each sequence, which keeps attention inside each sequence when no
    attention mask is given; `sequence_ids` says which sequence each token belongs to and
    `last_token_index` [2B] is the flat index of each sequence's last token (where its reward is read).
    """
    sequences = _sequences(examples)
    ids = [t for seq, _ in sequences for t in seq]
    mask = [m for _, seq_mask in sequences for m in seq_mask]
    positions = [p for seq, _ in sequences for p in range(len(seq))]
    sequence_ids = [i for i, (seq, _) in enumerate(sequences) for _ in seq]
    lengths = torch.tensor([len(seq) for seq, _ in sequences], dtype=torch.long)
    return {
        "input_ids": torch.tensor([ids], dtype=torch.long),
        "position_ids": torch.tensor([positions], dtype=torch.long),
        "response_mask": torch.tensor([mask], dtype=torch.long),
        "sequence_ids": torch.tensor([sequence_ids], dtype=torch.long),
        "last_token_index": torch.cumsum(lengths, dim=0) - 1,
        **_pair_fields(examples),
    }


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

    def epoch_of(self, step: int) -> float:
        return step / self.steps_per_epoch
