"""Tokenization layout and batched scoring of pairs / responses with a tiny reward model."""

import numpy as np
import pytest
import torch
from helpers_tiny import build_tiny_tokenizer, save_tiny_base, tiny_pairs_df

from rewardlab.encoding import encode_pairs, encode_prompt_response, encode_responses
from rewardlab.modeling import RewardEnsemble, RewardModel
from rewardlab.scoring import score_pairs, score_responses

SCORE_COLUMNS = ["id", "reward_chosen", "reward_rejected", "hidden_norm_chosen", "hidden_norm_rejected"]


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tokenizer):
    directory, _ = save_tiny_base(tmp_path_factory.mktemp("tiny_base"), seed=0, tokenizer=tokenizer)
    return directory


@pytest.fixture(scope="module")
def model(base_dir):
    torch.manual_seed(7)
    return RewardModel.from_base(base_dir, head="linear")


def ids_of(tokenizer, text):
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def test_encode_layout_bos_prompt_then_response(tokenizer):
    prompt, response = "Human: Tell me a joke.\n\nAssistant:", " Why did the chicken cross the road?"
    input_ids, mask = encode_prompt_response(tokenizer, prompt, response, max_length=512)
    p, r = ids_of(tokenizer, prompt), ids_of(tokenizer, response)
    assert input_ids == [tokenizer.bos_token_id] + p + r
    assert mask == [0] * (1 + len(p)) + [1] * len(r)
    # A prompt that already carries the BOS text (e.g. from a chat template) gets no second one.
    again, _ = encode_prompt_response(tokenizer, tokenizer.bos_token + prompt, response, max_length=512)
    assert again.count(tokenizer.bos_token_id) == 1 and again[0] == tokenizer.bos_token_id


def test_encode_keeps_the_prompt_end_and_the_response_start(tokenizer):
    prompt, response = "Human: How do I bake bread? Please explain.", " Mix flour and water."
    p, r = ids_of(tokenizer, prompt), ids_of(tokenizer, response)
    max_length = 1 + len(r) + 3
    input_ids, mask = encode_prompt_response(tokenizer, prompt, response, max_length)
    assert len(input_ids) == max_length
    assert input_ids == [tokenizer.bos_token_id] + p[-3:] + r
    assert mask == [0] * 4 + [1] * len(r)
    # When the response alone is too long, the prompt goes and the response keeps its start after BOS.
    short, short_mask = encode_prompt_response(tokenizer, prompt, response, max_length=3)
    assert short == [tokenizer.bos_token_id] + r[:2] and short_mask == [0, 1, 1]
    assert encode_prompt_response(tokenizer, prompt, response, max_length=1) == (r[:1], [1])
    with pytest.raises(ValueError, match="max_length"):
        encode_prompt_response(tokenizer, prompt, response, max_length=0)
    # A response longer than the floor keeps min_response_tokens of its start; the prompt's end fills the rest.
    floor, _ = encode_prompt_response(tokenizer, prompt, response, max_length=1 + 5, min_response_tokens=2)
    assert floor == [tokenizer.bos_token_id] + p[-3:] + r[:2]


def test_batched_encoding_matches_single(tokenizer):
    pairs = tiny_pairs_df(6)
    batched = encode_responses(tokenizer, list(pairs["prompt"]), list(pairs["chosen"]), 40)
    single = [encode_prompt_response(tokenizer, p, c, 40) for p, c in zip(pairs["prompt"], pairs["chosen"])]
    assert [(list(e.input_ids), list(e.response_mask)) for e in batched] == single


def test_tokenizer_without_bos_adds_nothing(tokenizer):
    no_bos = build_tiny_tokenizer()
    no_bos.bos_token = None
    ids, mask = encode_prompt_response(no_bos, "Human: hi", " hello", 64)
    assert ids == ids_of(no_bos, "Human: hi") + ids_of(no_bos, " hello")
    assert sum(mask) == len(ids_of(no_bos, " hello"))


def test_score_pairs_matches_one_by_one_forward(model, tokenizer):
    pairs = tiny_pairs_df(9)
    scores = score_pairs(model, tokenizer, pairs, batch_size=4, max_length=24, progress=False,
                         min_response_tokens=8)
    assert list(scores.columns) == SCORE_COLUMNS + ["truncated"] and list(scores["id"]) == list(pairs["id"])
    encoded = encode_pairs(tokenizer, pairs["prompt"], pairs["chosen"], pairs["rejected"], 24, min_response_tokens=8)
    assert scores["truncated"].dtype == bool and 0 < scores["truncated"].sum() < len(pairs)
    assert scores["truncated"].tolist() == [pair.truncation.any for pair in encoded]
    model.eval()
    with torch.no_grad():
        for row, pair in enumerate(encoded):
            for side in ("chosen", "rejected"):
                out = model(torch.tensor([getattr(pair, f"{side}_ids")]))
                assert scores.loc[row, f"reward_{side}"] == pytest.approx(out.rewards.item(), abs=1e-5)
                norm = out.last_hidden.norm().item()
                assert scores.loc[row, f"hidden_norm_{side}"] == pytest.approx(norm, rel=1e-5)


def test_score_pairs_is_order_invariant_and_restores_mode(model, tokenizer):
    pairs = tiny_pairs_df(11)
    model.train()
    ordered = score_pairs(model, tokenizer, pairs, batch_size=3, max_length=64, progress=False)
    assert model.training  # training mode restored after scoring
    shuffled_pairs = pairs.sample(frac=1.0, random_state=3).reset_index(drop=True)
    shuffled = score_pairs(model, tokenizer, shuffled_pairs, batch_size=5, max_length=64, progress=True)
    assert list(shuffled["id"]) == list(shuffled_pairs["id"])
    merged = ordered.merge(shuffled, on="id", suffixes=("", "_shuffled"))
    assert len(merged) == len(pairs)
    for column in SCORE_COLUMNS[1:]:
        np.testing.assert_allclose(merged[column], merged[f"{column}_shuffled"], atol=1e-5)
    model.eval()


def test_score_responses_agree_with_score_pairs(model, tokenizer):
    pairs = tiny_pairs_df(7)
    scores = score_pairs(model, tokenizer, pairs, batch_size=4, max_length=64, progress=False)
    rewards = score_responses(model, tokenizer, list(pairs["prompt"]), list(pairs["rejected"]), batch_size=2,
                              max_length=64, progress=False)
    assert isinstance(rewards, np.ndarray) and rewards.shape == (7,)
    # Uncut, a lone response is encoded as within its pair (cut, a pair's prompt cut follows its longer response).
    uncut = ~scores["truncated"].to_numpy()
    assert uncut.sum() >= 5
    np.testing.assert_allclose(rewards[uncut], scores["reward_rejected"][uncut], atol=1e-5)
    with pytest.raises(ValueError, match="prompts for"):
        score_responses(model, tokenizer, ["a"], ["b", "c"], progress=False)


def test_conversational_pairs_are_scored(model, tokenizer):
    pairs = tiny_pairs_df(3)
    pairs["prompt"] = [[{"role": "user", "content": f"question {i}"}] for i in range(3)]
    pairs["chosen"] = [[{"role": "assistant", "content": text}] for text in tiny_pairs_df(3)["chosen"]]
    pairs["rejected"] = [[{"role": "assistant", "content": text}] for text in tiny_pairs_df(3)["rejected"]]
    scores = score_pairs(model, tokenizer, pairs, batch_size=2, max_length=64, progress=False)
    assert np.isfinite(scores[["reward_chosen", "reward_rejected"]].to_numpy()).all()


def test_ensemble_scores_are_member_means(base_dir, model, tokenizer):
    torch.manual_seed(11)
    other = RewardModel.from_base(base_dir)
    pairs = tiny_pairs_df(5)
    each = [score_pairs(m, tokenizer, pairs, batch_size=2, max_length=64, progress=False) for m in (model, other)]
    ensemble = score_pairs(RewardEnsemble([model, other], reduce="mean"), tokenizer, pairs, batch_size=3,
                           max_length=64, progress=False)
    np.testing.assert_allclose(ensemble["reward_chosen"], (each[0]["reward_chosen"] + each[1]["reward_chosen"]) / 2,
                               atol=1e-5)
    worst = score_pairs(RewardEnsemble([model, other], reduce="min"), tokenizer, pairs, max_length=64,
                        progress=False)
    np.testing.assert_allclose(worst["reward_rejected"],
                               np.minimum(each[0]["reward_rejected"], each[1]["reward_rejected"]), atol=1e-5)


@pytest.mark.parametrize("batch_size, max_tokens", [(64, None), (5, None), (64, 60), (3, 45)])
def test_packed_scoring_matches_padded(model, tokenizer, batch_size, max_tokens):
    pairs = tiny_pairs_df(13)
    model.eval()
    padded = score_pairs(model, tokenizer, pairs, batch_size=4, max_length=64, progress=False)
    packed = score_pairs(model, tokenizer, pairs, batch_size=batch_size, max_length=64, progress=False,
                         packing=True, max_tokens=max_tokens)
    assert list(packed["id"]) == list(pairs["id"])
    for column in SCORE_COLUMNS[1:]:
        np.testing.assert_allclose(packed[column], padded[column], atol=1e-5, rtol=1e-5)
    assert padded["truncated"].any()  # cut sequences are packed as they are padded
    responses = {"prompts": list(pairs["prompt"]), "responses": list(pairs["chosen"]), "max_length": 64,
                 "progress": False}
    rewards = score_responses(model, tokenizer, batch_size=batch_size, packing=True, max_tokens=max_tokens,
                              **responses)
    np.testing.assert_allclose(rewards, score_responses(model, tokenizer, batch_size=4, **responses), atol=1e-5,
                               rtol=1e-5)


def test_packed_batches_respect_the_count_and_the_token_budget(model, tokenizer, monkeypatch):
    pairs = tiny_pairs_df(13)
    seen = []
    forward = type(model).forward

    def recording_forward(self, input_ids, **kwargs):
        seen.append((input_ids.shape, kwargs.get("attention_mask") is None, len(kwargs["last_token_index"])))
        return forward(self, input_ids, **kwargs)

    monkeypatch.setattr(type(model), "forward", recording_forward)
    score_pairs(model, tokenizer, pairs, batch_size=5, max_length=64, progress=False, packing=True, max_tokens=50)
    assert seen and all(shape[0] == 1 and maskless for shape, maskless, _ in seen)  # one row, no padding
    assert all(count <= 5 for _, _, count in seen)
    assert all(shape[1] <= 50 or count == 1 for shape, _, count in seen)  # only a lone long sequence exceeds it
    assert sum(count for _, _, count in seen) == 2 * len(pairs)


def test_packed_scoring_of_an_ensemble_and_fallback_for_a_model_that_cannot_pack(base_dir, model, tokenizer,
                                                                                caplog):
    from transformers import AutoConfig, AutoModelForCausalLM

    torch.manual_seed(11)
    ensemble = RewardEnsemble([model, RewardModel.from_base(base_dir)], reduce="min").eval()
    pairs = tiny_pairs_df(6)
    padded = score_pairs(ensemble, tokenizer, pairs, batch_size=4, max_length=64, progress=False)
    packed = score_pairs(ensemble, tokenizer, pairs, max_length=64, progress=False, packing=True)
    np.testing.assert_allclose(packed["reward_chosen"], padded["reward_chosen"], atol=1e-5, rtol=1e-5)
    config = AutoConfig.for_model("opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                  num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=128,
                                  pad_token_id=tokenizer.pad_token_id)
    opt = RewardModel(AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")).eval()
    with caplog.at_level("WARNING", logger="rewardlab.scoring"):
        fallback = score_pairs(opt, tokenizer, pairs, max_length=64, progress=False, packing=True)
    assert "scoring padded batches instead" in caplog.text and "opt" in caplog.text
    expected = score_pairs(opt, tokenizer, pairs, max_length=64, progress=False)
    np.testing.assert_allclose(fallback["reward_chosen"], expected["reward_chosen"], atol=1e-6)


def test_real_dialogues_longer_than_max_length(model, tokenizer, hh_rlhf_path):
    import gzip
    import json

    import pandas as pd

    rows = []
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as handle:
        for index, line in zip(range(8), handle):
            record = json.loads(line)
            cut = record["chosen"].rfind("\n\nAssistant:") + len("\n\nAssistant:")
            prompt = record["chosen"][:cut]
            rows.append({"id": f"hh-{index}", "prompt": prompt, "chosen": record["chosen"][cut:],
                         "rejected": record["rejected"][len(prompt):] if record["rejected"].startswith(prompt)
                         else record["rejected"][cut:]})
    pairs = pd.DataFrame(rows)
    scores = score_pairs(model, tokenizer, pairs, batch_size=3, max_length=48, progress=False)
    reversed_scores = score_pairs(model, tokenizer, pairs.iloc[::-1], batch_size=4, max_length=48, progress=False)
    assert np.isfinite(scores[SCORE_COLUMNS[1:]].to_numpy()).all()
    merged = scores.merge(reversed_scores, on="id", suffixes=("", "_reversed"))
    np.testing.assert_allclose(merged["reward_chosen"], merged["reward_chosen_reversed"], atol=1e-5)
