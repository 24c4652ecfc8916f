"""Model inputs for reward models: prompt and response(s) to token ids, and token ids to batches.

Training, scoring and best-of-n all encode through this module, so a model is scored on exactly the layout
it was trained on and a pair is encoded to the same ids by training and by scoring.

Layout: ``[BOS] + prompt + response``. Prompt and response are tokenized as two separate pieces, from the texts
`rewardlab.schema.pair_texts` gives (conversations rendered with the tokenizer's chat template when it has
one); ``response_mask`` is 1 on the response tokens. BOS is added unless the tokenizer has none or the
(e.g. template-rendered) prompt already starts with it.

Truncation keeps the end of the prompt (the turn being answered) and the start of each response. Both
responses of a pair share one prompt cut, so chosen and rejected are always judged against the same prompt.
With ``room = max_length - len(BOS prefix)`` and ``R`` the longest response's length, the prompt keeps
``min(len(prompt), max(0, room - min(R, min_response_tokens)))`` tokens and each response keeps at most the
rest, from its start. Every response thus keeps at least ``min_response_tokens`` tokens (all of it when
shorter), and beyond that floor the prompt keeps as much as fits. A lone response follows the same rule
with ``R`` = its own length.

Batches are padded (``attention_mask``) or packed: one row of sequences laid end to end, position ids
restarting at 0 for each, the reward read at each sequence's ``last_token_index``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import torch

from rewardlab.schema import pair_texts

DEFAULT_MIN_RESPONSE_TOKENS = 64

TokenIds = tuple[int, ...]
IdsAndMask = tuple[TokenIds, TokenIds]  # (input_ids, response_mask)


class Truncation(NamedTuple):
    """What max_length cut from an encoded prompt and its response(s)."""

    prompt: bool = False
    response: bool = False

    @property
    def any(self) -> bool:
        return self.prompt or self.response


class RowFieldError(ValueError):
    """A row whose prompt and response cannot be read as text (e.g. plain text mixed with messages)."""

    def __init__(self, row: int, field: str, problem: str):
        super().__init__(f"row {row}, field '{field}': {problem}")
        self.row, self.field, self.problem = row, field, problem


@dataclass(frozen=True)
class EncodedResponse:
    input_ids: TokenIds
    response_mask: TokenIds
    truncation: Truncation


@dataclass(frozen=True)
class EncodedPair:
    chosen_ids: TokenIds
    chosen_response_mask: TokenIds
    rejected_ids: TokenIds
    rejected_response_mask: TokenIds
    truncation: Truncation


# ------------------------------------------------------------------------------------------ special tokens


def pad_id(tokenizer, required: bool = False) -> int:
    """The tokenizer's pad token, else its eos token; else 0 unless `required` (generation needs a real one)."""
    for attribute in ("pad_token_id", "eos_token_id"):
        value = getattr(tokenizer, attribute, None)
        if value is not None:
            return int(value)
    if required:
        raise ValueError("the tokenizer has neither a pad nor an eos token")
    return 0  # padding sits under attention_mask 0, so any in-vocabulary id does


def bos_prefix(tokenizer, prompt_text: str, prompt_ids: Sequence[int]) -> list[int]:
    """[bos] unless the tokenizer has none or the (e.g. chat-template rendered) prompt already starts with it."""
    bos_id = getattr(tokenizer, "bos_token_id", None)
    if bos_id is None:
        return []
    bos_text = getattr(tokenizer, "bos_token", None)
    if (len(prompt_ids) and prompt_ids[0] == bos_id) or (bos_text and prompt_text.startswith(bos_text)):
        return []
    return [int(bos_id)]


# -------------------------------------------------------------------------------------------- truncation


def prompt_tokens_kept(room: int, prompt_length: int, longest_response: int, min_response_tokens: int) -> int:
    """How many prompt tokens (from its end) fit beside responses that keep their floor of tokens."""
    return min(prompt_length, max(0, room - min(longest_response, min_response_tokens)))


def assemble(prefix: Sequence[int], prompt_ids: Sequence[int], responses: Sequence[Sequence[int]], max_length: int,
             min_response_tokens: int = DEFAULT_MIN_RESPONSE_TOKENS) -> tuple[list[IdsAndMask], Truncation]:
    """(input_ids, response_mask) of prefix + prompt + each response, all with one prompt cut, and what was cut.

    The prefix (BOS) stays unless max_length leaves no room beside it.
    """
    if max_length < 1:
        raise ValueError(f"max_length must be at least 1, got {max_length}")
    if min_response_tokens < 1:
        raise ValueError(f"min_response_tokens must be at least 1, got {min_response_tokens}")
    prefix = tuple(prefix) if max_length > len(prefix) else ()
    room = max_length - len(prefix)
    kept = prompt_tokens_kept(room, len(prompt_ids), max((len(r) for r in responses), default=0),
                              min_response_tokens)
    prompt = tuple(prompt_ids[len(prompt_ids) - kept:])
    response_room = room - kept
    encoded = []
    for response in responses:
        response = tuple(response[:response_room])
        input_ids = prefix + prompt + response
        if not input_ids:
            raise ValueError("prompt and response are both empty: nothing to score")
        encoded.append((input_ids, (0,) * (len(prefix) + kept) + (1,) * len(response)))
    truncation = Truncation(prompt=kept < len(prompt_ids),
                            response=any(len(response) > response_room for response in responses))
    return encoded, truncation


# ------------------------------------------------------------------------------------------- text to ids


def _token_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    if not texts:
        return []
    return [list(map(int, ids)) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


def _texts(tokenizer, row: int, prompt: Any, responses: dict[str, Any]) -> tuple[str, list[str]]:
    """One prompt text and the response texts of one row, whose concatenations are the model inputs."""
    rendered = {}
    for field, response in responses.items():
        try:
            rendered[field] = pair_texts(prompt, response, tokenizer)
        except ValueError as error:
            raise RowFieldError(row, field, str(error)) from error
    # A chat template may render the history differently depending on the response that follows (pair_texts then
    # cuts each side where its prompt and its whole conversation agree): the prompt is what every side shares,
    # and each side's remainder goes into its response.
    shared = os.path.commonprefix([prompt_text for prompt_text, _ in rendered.values()])
    return shared, [prompt_text[len(shared):] + text for prompt_text, text in rendered.values()]


def encode_pairs(tokenizer, prompts: Sequence, chosen: Sequence, rejected: Sequence, max_length: int, *,
                 min_response_tokens: int = DEFAULT_MIN_RESPONSE_TOKENS) -> list[EncodedPair]:
    """Each pair's chosen and rejected sequences, with one prompt cut per pair; rows plain or conversational."""
    prompts, chosen, rejected = list(prompts), list(chosen), list(rejected)
    if not len(prompts) == len(chosen) == len(rejected):
        raise ValueError(f"{len(prompts)} prompts, {len(chosen)} chosen and {len(rejected)} rejected responses")
    texts = [_texts(tokenizer, row, prompt, {"chosen": c, "rejected": r})
             for row, (prompt, c, r) in enumerate(zip(prompts, chosen, rejected))]
    prompt_ids = _token_ids(tokenizer, [prompt for prompt, _ in texts])
    chosen_ids = _token_ids(tokenizer, [responses[0] for _, responses in texts])
    rejected_ids = _token_ids(tokenizer, [responses[1] for _, responses in texts])
    encoded = []
    for (prompt, _), p_ids, c_ids, r_ids in zip(texts, prompt_ids, chosen_ids, rejected_ids):
        ((c, c_mask), (r, r_mask)), truncation = assemble(bos_prefix(tokenizer, prompt, p_ids), p_ids,
                                                          (c_ids, r_ids), max_length, min_response_tokens)
        encoded.append(EncodedPair(c, c_mask, r, r_mask, truncation))
    return encoded


def encode_responses(tokenizer, prompts: Sequence, responses: Sequence, max_length: int, *,
                     min_response_tokens: int = DEFAULT_MIN_RESPONSE_TOKENS) -> list[EncodedResponse]:
    """Each (prompt, response) on its own; prompts and responses plain or conversational."""
    prompts, responses = list(prompts), list(responses)
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts for {len(responses)} responses")
    texts = [_texts(tokenizer, row, prompt, {"response": response})
             for row, (prompt, response) in enumerate(zip(prompts, responses))]
    prompt_ids = _token_ids(tokenizer, [prompt for prompt, _ in texts])
    response_ids = _token_ids(tokenizer, [response for _, (response,) in texts])
    encoded = []
    for (prompt, _), p_ids, r_ids in zip(texts, prompt_ids, response_ids):
        ((ids, mask),), truncation = assemble(bos_prefix(tokenizer, prompt, p_ids), p_ids, (r_ids,), max_length,
                                              min_response_tokens)
        encoded.append(EncodedResponse(ids, mask, truncation))
    return encoded


def encode_prompt_response(tokenizer, prompt: Any, response: Any, max_length: int, *,
                           min_response_tokens: int = DEFAULT_MIN_RESPONSE_TOKENS) -> tuple[list[int], list[int]]:
    """(input_ids, response_mask) of one (prompt, response), as `encode_responses` gives it."""
    (encoded,) = encode_responses(tokenizer, [prompt], [response], max_length,
                                  min_response_tokens=min_response_tokens)
    return list(encoded.input_ids), list(encoded.response_mask)


# ----------------------------------------------------------------------------------------------- batches


def padded_batch(sequences: Sequence[Sequence[int]], pad_token_id: int,
                 response_masks: Sequence[Sequence[int]] | None = None,
                 side: Literal["right", "left"] = "right") -> dict[str, torch.Tensor]:
    """`input_ids` and `attention_mask` [N, longest] (and `response_mask` when given), padded on `side`.

    Right padding for reward models (the reward is read at the last real token); left padding for
    generation, where every row's next token must sit at the last position.
    """
    if side not in ("right", "left"):
        raise ValueError(f"side must be 'right' or 'left', got {side!r}")
    width = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), width), int(pad_token_id), dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask}
    if response_masks is not None:
        batch["response_mask"] = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, ids in enumerate(sequences):
        columns = slice(0, len(ids)) if side == "right" else slice(width - len(ids), width)
        input_ids[row, columns] = torch.tensor(ids, dtype=torch.long)
        attention_mask[row, columns] = 1
        if response_masks is not None:
            batch["response_mask"][row, columns] = torch.tensor(response_masks[row], dtype=torch.long)
    return batch


def packed_batch(sequences: Sequence[Sequence[int]],
                 response_masks: Sequence[Sequence[int]] | None = None) -> dict[str, torch.Tensor]:
    """All sequences in one row [1, T], no padding.

    `position_ids` restart at 0 for each sequence, which keeps attention inside each sequence when no
    attention mask is given; `last_token_index` [N] is the flat index of each sequence's last token (where
    its reward is read). With `response_masks`, also `response_mask` and `sequence_ids` [1, T] (which
    sequence each token belongs to, so summed log-probabilities stay per sequence).
    """
    lengths = [len(ids) for ids in sequences]
    batch = {
        "input_ids": torch.tensor([[t for ids in sequences for t in ids]], dtype=torch.long),
        "position_ids": torch.tensor([[p for n in lengths for p in range(n)]], dtype=torch.long),
        "last_token_index": torch.cumsum(torch.tensor(lengths, dtype=torch.long), dim=0) - 1,
    }
    if response_masks is not None:
        batch["response_mask"] = torch.tensor([[m for mask in response_masks for m in mask]], dtype=torch.long)
        batch["sequence_ids"] = torch.tensor([[i for i, n in enumerate(lengths) for _ in range(n)]],
                                             dtype=torch.long)
    return batch
