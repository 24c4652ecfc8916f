import copy
import itertools
import math

import numpy as np
import pandas as pd
import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from rewardlab.bon import (
    CURVE_COLUMNS,
    bon_curves,
    bon_expected_scores,
    bon_rank_weights,
    default_ns,
    gold_peak,
    kl_bon,
    sample_responses,
    sampling_fingerprint,
)

# ----------------------------------------------------------------------------------- estimator


def _brute_force(proxy: np.ndarray, gold: np.ndarray, n: int) -> tuple[float, float]:
    """Average over prompts of the mean, over every n-subset, of the proxy-best sample's scores.

    Ties in proxy go to the later sample index, the rule bon_expected_scores documents.
    """
    per_prompt = []
    for p_row, g_row in zip(proxy, gold):
        picks = [max(subset, key=lambda j: (p_row[j], j)) for subset in itertools.combinations(range(len(p_row)), n)]
        per_prompt.append((np.mean([p_row[j] for j in picks]), np.mean([g_row[j] for j in picks])))
    return tuple(np.mean(per_prompt, axis=0))


@pytest.mark.parametrize("with_ties", [False, True])
def test_estimator_matches_enumeration_over_all_subsets(with_ties):
    rng = np.random.default_rng(11)
    proxy = rng.normal(size=(5, 6))
    if with_ties:
        proxy = np.round(proxy)  # many equal proxy scores within a prompt
    gold = rng.normal(size=(5, 6))
    expected = bon_expected_scores(proxy, gold, ns=range(1, 7))
    assert expected["n"].tolist() == [1, 2, 3, 4, 5, 6]
    for _, row in expected.iterrows():
        proxy_bf, gold_bf = _brute_force(proxy, gold, int(row["n"]))
        assert abs(row["proxy"] - proxy_bf) < 1e-12
        assert abs(row["gold"] - gold_bf) < 1e-12


def test_rank_weights_are_a_distribution_for_large_n():
    for n in (1, 2, 37, 500, 1000):
        weights = bon_rank_weights(1000, n)
        assert weights.min() >= 0.0
        assert weights.sum() == pytest.approx(1.0, abs=1e-9)
        assert np.all(weights[: n - 1] == 0.0)
    assert np.allclose(bon_rank_weights(10, 1), 0.1)
    with pytest.raises(ValueError):
        bon_rank_weights(5, 6)


def test_kl_formula():
    assert kl_bon(1) == 0.0
    assert kl_bon(405) == pytest.approx(math.log(405) - 404 / 405)
    assert abs(kl_bon(405) - 5.0) < 0.01
    assert np.allclose(kl_bon(np.array([1, 2])), [0.0, math.log(2) - 0.5])


def test_curves_start_at_zero_and_shared_gold():
    rng = np.random.default_rng(0)
    gold = rng.normal(size=(8, 16))
    proxies = {"aligned": gold + 0.1 * rng.normal(size=gold.shape), "noise": rng.normal(size=gold.shape)}
    curves = bon_curves(proxies, gold, ns=[2, 4, 16])
    assert list(curves.columns) == CURVE_COLUMNS
    for _, curve in curves.groupby("variant"):
        assert curve["n"].tolist() == [1, 2, 4, 16]  # n = 1 is always added
        assert curve["proxy"].iloc[0] == 0.0 and curve["gold"].iloc[0] == 0.0
        assert np.allclose(curve["sqrt_kl"] ** 2, curve["kl"])
        assert curve["gold_raw"].iloc[0] == pytest.approx(gold.mean())
    aligned = curves[curves["variant"] == "aligned"]
    assert aligned["gold"].is_monotonic_increasing  # a proxy close to gold improves gold
    # Same numbers when gold is given per variant.
    per_variant = bon_curves(proxies, {k: gold for k in proxies}, ns=[2, 4, 16])
    pd.testing.assert_frame_equal(curves, per_variant)


def test_default_ns_spans_one_to_n():
    ns = default_ns(405)
    assert ns[0] == 1 and ns[-1] == 405 and ns == sorted(set(ns))


def test_gold_peak_flags_a_curve_that_falls_back():
    n = np.array([1, 2, 4, 8, 16])
    kl = kl_bon(n)
    curves = pd.DataFrame(
        {
            "variant": ["hacked"] * 5 + ["robust"] * 5,
            "n": np.concatenate([n, n]),
            "kl": np.concatenate([kl, kl]),
            "gold": [0.0, 0.3, 0.5, 0.3, 0.1] + [0.0, 0.3, 0.5, 0.6, 0.59],
        }
    )
    peaks = gold_peak(curves).set_index("variant")
    assert peaks.loc["hacked", "n_at_peak"] == 4
    assert peaks.loc["hacked", "kl_at_peak"] == pytest.approx(kl_bon(4))
    assert peaks.loc["hacked", "gold_drop"] == pytest.approx(0.4)
    assert bool(peaks.loc["hacked", "overoptimized"])
    # A 0.01 dip after a 0.6 gain is within the 10% tolerance.
    assert not bool(peaks.loc["robust", "overoptimized"])
    assert peaks.loc["robust", "gold_at_max_n"] == pytest.approx(0.59)


# ----------------------------------------------------------------------------------- sampling


@pytest.fixture(scope="module")
def tiny_lm():
    texts = [
        f"the {a} {b} sat on the {c} mat."
        for a in ("red", "blue", "old")
        for b in ("cat", "dog")
        for c in ("big", "small")
    ]
    tokenizer_core = Tokenizer(models.BPE())
    tokenizer_core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer_core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<bos>", "<eos>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    tokenizer_core.train_from_iterator(texts, trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_core, pad_token="<pad>", bos_token="<bos>", eos_token="<eos>"
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    # float64 keeps padding-induced rounding differences far below anything that could flip a sample.
    model = LlamaForCausalLM(config).to(torch.float64).eval()
    return model, tokenizer


PROMPTS = ["the red cat", "the old dog sat on the big", "a"]


def _sample(tiny_lm, **kwargs) -> pd.DataFrame:
    model, tokenizer = tiny_lm
    args = {"n": 4, "max_new_tokens": 6, "seed": 3, "batch_size": 5, "progress": False} | kwargs
    return sample_responses(model, tokenizer, PROMPTS, **args)


def test_sampling_shape_and_reproducibility(tiny_lm):
    first = _sample(tiny_lm)
    assert len(first) == len(PROMPTS) * 4
    assert first[["prompt_idx", "sample_idx"]].drop_duplicates().shape[0] == 12
    assert first.groupby("prompt_idx")["prompt"].first().tolist() == PROMPTS
    assert first["response_tokens"].between(0, 6).all()
    pd.testing.assert_frame_equal(first, _sample(tiny_lm))
    # Each sample has its own random stream, so batching does not change it.
    pd.testing.assert_frame_equal(first, _sample(tiny_lm, batch_size=2))
    pd.testing.assert_frame_equal(first, _sample(tiny_lm, batch_size=64))
    other_seed = _sample(tiny_lm, seed=4)
    assert not first["response"].equals(other_seed["response"])
    # Different samples of one prompt differ (a random-init model spreads its mass widely).
    assert first.groupby("prompt_idx")["response"].nunique().min() > 1


def test_greedy_and_tiny_top_p_match_plain_generate(tiny_lm):
    model, tokenizer = tiny_lm
    greedy = _sample(tiny_lm, temperature=0.0)
    nucleus = _sample(tiny_lm, top_p=1e-9)
    for p, prompt in enumerate(PROMPTS):
        ids = tokenizer(prompt, return_tensors="pt")
        out = model.generate(**ids, do_sample=False, max_new_tokens=6, pad_token_id=tokenizer.pad_token_id)
        new_tokens = out[0, ids["input_ids"].shape[1] :].tolist()
        if tokenizer.eos_token_id in new_tokens:
            new_tokens = new_tokens[: new_tokens.index(tokenizer.eos_token_id)]
        reference = tokenizer.decode(new_tokens, skip_special_tokens=True)
        assert set(greedy.loc[greedy["prompt_idx"] == p, "response"]) == {reference}
        assert set(nucleus.loc[nucleus["prompt_idx"] == p, "response"]) == {reference}


def test_sampling_rejects_bad_arguments(tiny_lm):
    with pytest.raises(ValueError):
        _sample(tiny_lm, n=0)
    with pytest.raises(ValueError):
        _sample(tiny_lm, top_p=0.0)


# ----------------------------------------------------------------------------------- sampling fingerprint

SETTINGS = {"num_samples": 4, "max_new_tokens": 6, "temperature": 1.0, "top_p": 1.0, "seed": 3, "batch_size": 5}


@pytest.fixture()
def policy_dir(tiny_lm, tmp_path):
    model, tokenizer = tiny_lm
    directory = tmp_path / "policy"
    model.save_pretrained(str(directory))
    tokenizer.save_pretrained(str(directory))
    return directory


def test_fingerprint_is_stable_and_ignores_where_the_policy_lies(policy_dir, tmp_path):
    import shutil

    key = sampling_fingerprint(policy_dir, PROMPTS, SETTINGS)
    assert key == sampling_fingerprint(str(policy_dir), list(PROMPTS), dict(reversed(SETTINGS.items())))
    moved = tmp_path / "elsewhere" / "policy"
    shutil.copytree(policy_dir, moved)
    assert sampling_fingerprint(moved, PROMPTS, SETTINGS) == key


@pytest.mark.parametrize("change", [{"num_samples": 5}, {"max_new_tokens": 7}, {"temperature": 0.7},
                                    {"top_p": 0.9}, {"seed": 4}, {"batch_size": 2}, {"dtype": "bfloat16"}])
def test_fingerprint_changes_with_every_sampling_setting(policy_dir, change):
    assert sampling_fingerprint(policy_dir, PROMPTS, SETTINGS | change) != sampling_fingerprint(
        policy_dir, PROMPTS, SETTINGS)


def test_fingerprint_changes_with_the_prompts_and_the_policy(policy_dir, tiny_lm):
    key = sampling_fingerprint(policy_dir, PROMPTS, SETTINGS)
    assert sampling_fingerprint(policy_dir, PROMPTS[:2], SETTINGS) != key
    assert sampling_fingerprint(policy_dir, [PROMPTS[0] + " ", *PROMPTS[1:]], SETTINGS) != key
    assert sampling_fingerprint(policy_dir, list(reversed(PROMPTS)), SETTINGS) != key
    model, _ = tiny_lm
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.lm_head.weight[0, 0] += 1e-6
    changed.save_pretrained(str(policy_dir))  # same files, same sizes, one weight differs
    assert sampling_fingerprint(policy_dir, PROMPTS, SETTINGS) != key


def test_fingerprint_of_a_large_file_reads_its_edges_and_its_mtime(tmp_path, monkeypatch):
    import os

    import rewardlab.bon as bon

    monkeypatch.setattr(bon, "_WHOLE_HASH_LIMIT", 64)
    monkeypatch.setattr(bon, "_EDGE_BYTES", 16)
    directory = tmp_path / "policy"
    directory.mkdir()
    weights = directory / "model.safetensors"
    weights.write_bytes(bytes(range(200)))
    mtime = weights.stat().st_mtime_ns
    key = sampling_fingerprint(directory, PROMPTS, SETTINGS)
    weights.write_bytes(bytes(range(199)) + b"\x00")  # the last byte, same size and mtime
    os.utime(weights, ns=(mtime, mtime))
    assert sampling_fingerprint(directory, PROMPTS, SETTINGS) != key
    weights.write_bytes(bytes(range(200)))
    os.utime(weights, ns=(mtime, mtime))
    assert sampling_fingerprint(directory, PROMPTS, SETTINGS) == key
    os.utime(weights, ns=(mtime + 10**9, mtime + 10**9))  # rewritten in place: same bytes read, new mtime
    assert sampling_fingerprint(directory, PROMPTS, SETTINGS) != key
    with pytest.raises(ValueError, match="does not exist"):
        sampling_fingerprint(tmp_path / "absent", PROMPTS, SETTINGS)
