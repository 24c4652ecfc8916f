"""One encoding for training, scoring and best-of-n: the same ids everywhere, and a pair cut against one prompt."""

from __future__ import annotations

from functools import cache
from unittest.mock import patch

import numpy as np
import pandas as pd
import pytest
import torch
from helpers_tiny import TINY_TEXTS, build_tiny_tokenizer, save_tiny_base
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import rewardlab.scoring
from rewardlab.encoding import (Truncation, assemble, bos_prefix, encode_pairs, packed_batch, pad_id, padded_batch,
                                prompt_tokens_kept)
from rewardlab.modeling import RewardModel
from rewardlab.schema import pair_texts
from rewardlab.scoring import score_pairs
from rewardlab.training.data import tokenize_pairs, truncation_counts

WORDS = sorted({word for text in TINY_TEXTS for word in text.split()})
# Words the tokenizer knows (long merged tokens) mixed with arbitrary text (byte-level tokens).
TEXT = st.lists(st.sampled_from(WORDS) | st.text(max_size=5), max_size=25).map(" ".join)


@cache
def tokenizer():
    return build_tiny_tokenizer()


def ids_of(text: str) -> list[int]:
    return tokenizer()(text, add_special_tokens=False)["input_ids"]


def as_row(prompt: str, chosen: str, rejected: str, conversational: bool) -> dict:
    if conversational:
        prompt = [{"role": "user", "content": prompt}]
        chosen, rejected = ([{"role": "assistant", "content": text}] for text in (chosen, rejected))
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def scoring_encoding(frame: pd.DataFrame, max_length: int, min_response_tokens: int):
    """What score_pairs encodes and what it hands the model, and its output frame (no model needed)."""
    seen = {}

    def spy(*args, **kwargs):
        seen["pairs"] = encode_pairs(*args, **kwargs)
        return seen["pairs"]

    def no_model(model, sequences, pad_token_id, *args, **kwargs):
        seen["sequences"] = list(sequences)
        return np.zeros(len(sequences)), np.zeros(len(sequences))

    with patch.object(rewardlab.scoring, "encode_pairs", spy), patch.object(rewardlab.scoring, "score_encoded",
                                                                            no_model):
        scores = score_pairs(None, tokenizer(), frame, max_length=max_length, progress=False,
                             min_response_tokens=min_response_tokens)
    return seen["pairs"], seen["sequences"], scores


def rule_by_hand(row: dict, max_length: int, min_response_tokens: int) -> list[tuple[int, ...]]:
    """The pair rule written out from its definition: [BOS] + the prompt's end + each response's start."""
    prompt_text, chosen_text = pair_texts(row["prompt"], row["chosen"], tokenizer())
    _, rejected_text = pair_texts(row["prompt"], row["rejected"], tokenizer())
    prompt, chosen, rejected = ids_of(prompt_text), ids_of(chosen_text), ids_of(rejected_text)
    bos = [] if prompt[:1] == [tokenizer().bos_token_id] else [tokenizer().bos_token_id]
    room = max_length - len(bos)
    keep = min(len(prompt), max(0, room - min(max(len(chosen), len(rejected)), min_response_tokens)))
    return [tuple(bos + prompt[len(prompt) - keep:] + response[:room - keep]) for response in (chosen, rejected)]


@settings(max_examples=60, deadline=None)
@given(rows=st.lists(st.tuples(TEXT, TEXT, TEXT), min_size=1, max_size=4), conversational=st.booleans(),
       max_length=st.integers(2, 80), min_response_tokens=st.integers(1, 40))
def test_training_and_scoring_encode_a_pair_to_the_same_ids(rows, conversational, max_length, min_response_tokens):
    frame = pd.DataFrame([{"id": f"p{i}", **as_row(*row, conversational)} for i, row in enumerate(rows)])
    examples = tokenize_pairs(frame, tokenizer(), max_length, min_response_tokens=min_response_tokens)
    pairs, sequences, scores = scoring_encoding(frame, max_length, min_response_tokens)
    for example, pair in zip(examples, pairs, strict=True):
        assert (example.chosen_ids, example.chosen_response_mask, example.rejected_ids,
                example.rejected_response_mask, example.truncation) == \
            (pair.chosen_ids, pair.chosen_response_mask, pair.rejected_ids, pair.rejected_response_mask,
             pair.truncation)
    assert sequences == [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
    assert scores["truncated"].tolist() == [e.truncation.any for e in examples]
    for example, row in zip(examples, frame.to_dict("records")):
        assert [example.chosen_ids, example.rejected_ids] == rule_by_hand(row, max_length, min_response_tokens)


@settings(max_examples=300, deadline=None)
@given(bos=st.booleans(), prompt=st.lists(st.integers(2, 99), max_size=60),
       responses=st.lists(st.lists(st.integers(2, 99), max_size=60), min_size=1, max_size=2),
       max_length=st.integers(2, 100), min_response_tokens=st.integers(1, 50))
def test_one_prompt_cut_keeps_its_end_and_each_response_keeps_its_start_and_floor(bos, prompt, responses, max_length,
                                                                                   min_response_tokens):
    assume(bos or all(responses))  # else a cut can leave a sequence with no token at all
    prefix = [1] if bos else []
    encoded, truncation = assemble(prefix, prompt, responses, max_length, min_response_tokens)
    kept_prefix = prefix if max_length > len(prefix) else []
    room = max_length - len(kept_prefix)
    longest = max(map(len, responses))
    kept = prompt_tokens_kept(room, len(prompt), longest, min_response_tokens)
    assert kept == min(len(prompt), max(0, room - min(longest, min_response_tokens)))
    for (ids, mask), response in zip(encoded, responses, strict=True):
        assert len(ids) == len(mask) <= max_length
        head, tail = list(ids[:len(kept_prefix) + kept]), list(ids[len(kept_prefix) + kept:])
        assert head == kept_prefix + prompt[len(prompt) - kept:]  # the same prompt tokens on every side: its end
        assert tail == response[:len(tail)]  # the response's start
        assert list(mask) == [0] * len(head) + [1] * len(tail)
        assert len(tail) >= min(len(response), min_response_tokens, room)  # the floor holds
    cut_responses = [len(ids) - len(kept_prefix) - kept < len(r) for (ids, _), r in zip(encoded, responses)]
    assert truncation == Truncation(prompt=kept < len(prompt), response=any(cut_responses))
    if truncation.prompt:  # beyond the floor the prompt keeps everything that fits
        longest_kept = max(len(ids) for ids, _ in encoded)
        assert longest_kept == max_length
        assert longest_kept - len(kept_prefix) - kept == min(longest, min_response_tokens, room)
    if not truncation.any:
        assert [list(ids) for ids, _ in encoded] == [kept_prefix + prompt + r for r in responses]


def test_a_lone_response_is_cut_by_its_own_length():
    prompt, response = list(range(10, 30)), list(range(40, 45))
    ((ids, mask),), truncation = assemble([1], prompt, [response], 16, min_response_tokens=8)
    assert ids == (1, *prompt[-10:], *response) and truncation == Truncation(prompt=True, response=False)
    pair, pair_truncation = assemble([1], prompt, [response, list(range(50, 70))], 16, min_response_tokens=8)
    assert pair[0][0] == (1, *prompt[-7:], *response)  # in a pair, the longer response sets the shared cut
    assert pair[1][0] == (1, *prompt[-7:], *range(50, 58)) and pair_truncation == Truncation(True, True)
    with pytest.raises(ValueError, match="min_response_tokens"):
        assemble([1], prompt, [response], 16, min_response_tokens=0)


def test_truncated_pairs_are_counted_in_scoring_and_training():
    long_prompt, long_response, short = "bread " * 20, " bread" * 20, " Sure."
    assert len(ids_of(long_prompt)) > 20 and len(ids_of(long_response)) > 20 and len(ids_of(short)) <= 5
    assert len(ids_of("Hi")) + len(ids_of(short)) <= 10
    frame = pd.DataFrame([
        {"id": "kept", "prompt": "Hi", "chosen": short, "rejected": " No."},
        {"id": "prompt cut", "prompt": long_prompt, "chosen": short, "rejected": " No."},
        {"id": "response cut", "prompt": "", "chosen": short, "rejected": long_response},
        {"id": "both cut", "prompt": long_prompt, "chosen": long_response, "rejected": short},
    ])
    _, _, scores = scoring_encoding(frame, max_length=11, min_response_tokens=6)
    assert scores["truncated"].tolist() == [False, True, True, True]
    examples = tokenize_pairs(frame, tokenizer(), 11, min_response_tokens=6)
    assert [e.truncation for e in examples] == [Truncation(False, False), Truncation(True, False),
                                                Truncation(False, True), Truncation(True, True)]
    assert truncation_counts(examples) == {"data.pairs": 4, "data.truncated_pairs": 3,
                                           "data.truncated_prompt_pairs": 2, "data.truncated_response_pairs": 2}
    both = examples[3]
    # 10 tokens beside BOS: the long response keeps its floor of 6, the prompt's last 4 tokens fill the rest.
    assert both.chosen_ids[:5] == both.rejected_ids[:5] == (tokenizer().bos_token_id, *ids_of(long_prompt)[-4:])
    assert both.chosen_ids[5:] == tuple(ids_of(long_response)[:6]) and sum(both.chosen_response_mask) == 6


def test_a_template_that_renders_the_history_per_response_still_gives_one_prompt():
    templated = build_tiny_tokenizer()
    # The first character of the last message leads the text: the rendered history differs per response.
    templated.chat_template = ("{{ messages[-1]['content'][:1] }}|{% for m in messages %}<{{ m['role'] }}>"
                               "{{ m['content'] }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
    row = as_row("question", "answer", "quiet", conversational=True)
    (pair,) = encode_pairs(templated, [row["prompt"]], [row["chosen"]], [row["rejected"]], 200)
    prompt_length = pair.chosen_response_mask.index(1)
    assert pair.rejected_response_mask.index(1) == prompt_length
    assert pair.chosen_ids[:prompt_length] == pair.rejected_ids[:prompt_length]
    for ids, side in ((pair.chosen_ids, "chosen"), (pair.rejected_ids, "rejected")):
        whole = templated.apply_chat_template(row["prompt"] + row[side], tokenize=False)
        assert templated.decode(ids, skip_special_tokens=True) == whole


def test_special_tokens_and_collation_layouts():
    tok = tokenizer()
    assert bos_prefix(tok, "hi", ids_of("hi")) == [tok.bos_token_id]
    assert bos_prefix(tok, tok.bos_token + "hi", ids_of(tok.bos_token + "hi")) == []
    assert pad_id(tok) == tok.pad_token_id
    bare = type("Bare", (), {"pad_token_id": None, "eos_token_id": None})()
    assert pad_id(bare) == 0
    with pytest.raises(ValueError, match="neither a pad nor an eos"):
        pad_id(bare, required=True)
    sequences, masks = [(5, 6, 7), (8,)], [(0, 1, 1), (1,)]
    right = padded_batch(sequences, 0, masks)
    assert right["input_ids"].tolist() == [[5, 6, 7], [8, 0, 0]]
    assert right["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert right["response_mask"].tolist() == [[0, 1, 1], [1, 0, 0]]
    left = padded_batch(sequences, 0, side="left")
    assert left["input_ids"].tolist() == [[5, 6, 7], [0, 0, 8]] and "response_mask" not in left
    packed = packed_batch(sequences, masks)
    assert packed["input_ids"].tolist() == [[5, 6, 7, 8]] and packed["position_ids"].tolist() == [[0, 1, 2, 0]]
    assert packed["sequence_ids"].tolist() == [[0, 0, 0, 1]] and packed["last_token_index"].tolist() == [2, 3]
    assert set(packed_batch(sequences)) == {"input_ids", "position_ids", "last_token_index"}


def test_cut_pairs_give_equal_rewards_padded_packed_and_one_by_one(tmp_path):
    directory, tok = save_tiny_base(tmp_path, tokenizer=tokenizer())
    torch.manual_seed(0)
    model = RewardModel.from_base(directory).eval()
    frame = pd.DataFrame([{"id": f"p{i}", "prompt": "bread " * (1 + i), "chosen": " bread" * (1 + 2 * i),
                           "rejected": " Sure."} for i in range(5)])
    padded = score_pairs(model, tok, frame, batch_size=2, max_length=40, progress=False, min_response_tokens=10)
    packed = score_pairs(model, tok, frame, max_length=40, progress=False, packing=True, min_response_tokens=10)
    assert 0 < padded["truncated"].sum() < len(frame)
    for column in ("reward_chosen", "reward_rejected"):
        np.testing.assert_allclose(packed[column], padded[column], atol=1e-5, rtol=1e-5)
    encoded = encode_pairs(tok, frame["prompt"], frame["chosen"], frame["rejected"], 40, min_response_tokens=10)
    with torch.no_grad():
        alone = [float(model(torch.tensor([pair.chosen_ids])).rewards[0]) for pair in encoded]
    np.testing.assert_allclose(padded["reward_chosen"], alone, atol=1e-5, rtol=1e-5)
