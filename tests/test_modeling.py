"""RewardModel / RewardEnsemble on tiny causal LMs: padding layouts, S(y), gradients, persistence."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from helpers_tiny import build_tiny_llama, build_tiny_tokenizer, save_tiny_base, tiny_pairs_df
from transformers import (
    Gemma2Config,
    Gemma2ForCausalLM,
    GPT2Config,
    GPT2LMHeadModel,
    Qwen2Config,
    Qwen2ForCausalLM,
)

from rewardlab.losses import LossConfig, compute_loss
from rewardlab.modeling import (
    ENSEMBLE_CONFIG_FILE,
    REWARD_CONFIG_FILE,
    REWARD_HEAD_FILE,
    RewardEnsemble,
    RewardModel,
    lm_load_args,
    load_reward_model,
)
from rewardlab.scoring import encode_prompt_response, score_pairs

TOL = 1e-5


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory, tokenizer):
    directory, _ = save_tiny_base(tmp_path_factory.mktemp("tiny_base"), seed=0, tokenizer=tokenizer)
    return directory


def fresh_model(base_dir, head="linear", seed=1, **kwargs) -> RewardModel:
    torch.manual_seed(seed)
    return RewardModel.from_base(base_dir, head=head, **kwargs).eval()


def encoded_sequences(tokenizer, n=4):
    pairs = tiny_pairs_df(n)
    return [encode_prompt_response(tokenizer, p, c, 64) for p, c in zip(pairs["prompt"], pairs["chosen"])]


def padded_batch(sequences, side: str, pad_id: int):
    width = max(len(ids) for ids, _ in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    response_mask = torch.zeros_like(input_ids)
    for row, (ids, resp) in enumerate(sequences):
        span = slice(0, len(ids)) if side == "right" else slice(width - len(ids), width)
        input_ids[row, span] = torch.tensor(ids)
        attention_mask[row, span] = 1
        response_mask[row, span] = torch.tensor(resp)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def packed_batch(sequences):
    ids = [i for seq, _ in sequences for i in seq]
    resp = [m for _, mask in sequences for m in mask]
    positions = [p for seq, _ in sequences for p in range(len(seq))]
    owners = [k for k, (seq, _) in enumerate(sequences) for _ in seq]
    lengths = torch.tensor([len(seq) for seq, _ in sequences])
    return {
        "input_ids": torch.tensor([ids]),
        "position_ids": torch.tensor([positions]),
        "attention_mask": None,
        "response_mask": torch.tensor([resp]),
        "last_token_index": torch.cumsum(lengths, 0) - 1,
        "sequence_ids": torch.tensor([owners]),
    }


def direct_logps(lm, ids, resp):
    """S(y) from full logits of one unpadded sequence, the textbook way."""
    logits = lm(input_ids=torch.tensor([ids])).logits[0].float()
    logprobs = F.log_softmax(logits, dim=-1)
    return sum(logprobs[t - 1, ids[t]].item() for t in range(1, len(ids)) if resp[t])


def test_rewards_agree_across_left_right_padding_and_packing(base_dir, tokenizer):
    model = fresh_model(base_dir)
    sequences = encoded_sequences(tokenizer, n=5)
    assert len({len(ids) for ids, _ in sequences}) > 1  # padding is really exercised
    with torch.no_grad():
        right = model(**padded_batch(sequences, "right", tokenizer.pad_token_id), compute_logps=True)
        left = model(**padded_batch(sequences, "left", tokenizer.pad_token_id), compute_logps=True)
        packed = model(**packed_batch(sequences), compute_logps=True)
        single = [model(torch.tensor([ids])).rewards.item() for ids, _ in sequences]
    assert right.rewards.dtype == torch.float32 and right.rewards.shape == (5,)
    for other in (left, packed):
        assert torch.allclose(right.rewards, other.rewards, atol=TOL)
        assert torch.allclose(right.last_hidden, other.last_hidden, atol=TOL)
        assert torch.allclose(right.response_logps, other.response_logps, atol=TOL)
    assert torch.allclose(right.rewards, torch.tensor(single), atol=TOL)


@pytest.mark.parametrize("chunk_size", [3, 4096])
def test_response_logps_match_full_logits(base_dir, tokenizer, chunk_size):
    model = fresh_model(base_dir)
    model.logp_chunk_size = chunk_size
    sequences = encoded_sequences(tokenizer, n=4)
    assert sum(sum(mask) for _, mask in sequences) > chunk_size or chunk_size > 100
    with torch.no_grad():
        out = model(**padded_batch(sequences, "right", tokenizer.pad_token_id), compute_logps=True)
        expected = torch.tensor([direct_logps(model.lm, ids, resp) for ids, resp in sequences])
    assert torch.allclose(out.response_logps, expected, atol=TOL)
    assert bool((out.response_logps < 0).all())


def test_response_logps_respect_final_logit_softcapping():
    torch.manual_seed(0)
    config = Gemma2Config(vocab_size=120, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=0.5)
    model = RewardModel(Gemma2ForCausalLM(config)).eval()
    ids, resp = list(range(5, 17)), [0] * 4 + [1] * 8
    with torch.no_grad():
        got = model(torch.tensor([ids]), response_mask=torch.tensor([resp]), compute_logps=True).response_logps
        expected = direct_logps(model.lm, ids, resp)  # Gemma2's own forward applies the softcap
    assert got.item() == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("family", ["llama", "gpt2", "qwen2"])
def test_last_hidden_is_final_layer_output(family, tokenizer):
    torch.manual_seed(0)
    if family == "llama":
        lm = build_tiny_llama(tokenizer)
    elif family == "gpt2":
        lm = GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), n_embd=32, n_layer=2, n_head=4,
                                        bos_token_id=1, eos_token_id=2)).eval()
    else:
        lm = Qwen2ForCausalLM(Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2)).eval()
    model = RewardModel(lm).eval()
    sequences = encoded_sequences(tokenizer, n=3)
    batch = padded_batch(sequences, "left", tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(**batch, compute_logps=True)
        for row, (ids, resp) in enumerate(sequences):
            full = lm(input_ids=torch.tensor([ids]), output_hidden_states=True)
            assert torch.allclose(out.last_hidden[row], full.hidden_states[-1][0, -1], atol=TOL)
            assert out.response_logps[row].item() == pytest.approx(direct_logps(lm, ids, resp), abs=1e-4)


def test_reward_head_types_init_and_dtype(base_dir, tokenizer):
    linear = fresh_model(base_dir, seed=3)
    same_seed = fresh_model(base_dir, seed=3)
    assert [type(m).__name__ for m in linear.reward_head] == ["Dropout", "Linear"]
    assert torch.equal(linear.reward_head[1].weight, same_seed.reward_head[1].weight)
    assert linear.reward_head[1].weight.std().item() == pytest.approx(1 / (32 + 1) ** 0.5, rel=0.5)
    mlp = fresh_model(base_dir, head="mlp")
    assert [type(m).__name__ for m in mlp.reward_head] == ["Dropout", "Linear", "ReLU", "Linear"]
    assert mlp.reward_head[1].out_features == 1024
    half = fresh_model(base_dir, dtype="bfloat16")
    assert next(half.lm.parameters()).dtype == torch.bfloat16
    assert all(p.dtype == torch.float32 for p in half.reward_head.parameters())
    batch = padded_batch(encoded_sequences(tokenizer, 3), "right", tokenizer.pad_token_id)
    with torch.no_grad():
        for model in (mlp, half):
            out = model(**batch, compute_logps=True)
            assert out.rewards.dtype == torch.float32 and bool(torch.isfinite(out.rewards).all())
            assert out.response_logps.dtype == torch.float32
    with pytest.raises(ValueError, match="head type"):
        RewardModel.from_base(base_dir, head="conv")


@pytest.mark.parametrize("loss_name", ["bt", "grm_sft"])
@pytest.mark.parametrize("layout", ["left", "packed"])
def test_gradients_reach_backbone_lm_head_and_reward_head(base_dir, tokenizer, loss_name, layout):
    model = fresh_model(base_dir, head="mlp").train()
    pairs = tiny_pairs_df(4)
    seqs = [encode_prompt_response(tokenizer, p, r, 64)
            for side in ("chosen", "rejected") for p, r in zip(pairs["prompt"], pairs[side])]
    batch = packed_batch(seqs) if layout == "packed" else padded_batch(seqs, "left", tokenizer.pad_token_id)
    out = model(**batch, compute_logps=True)
    cfg = LossConfig(name=loss_name, alpha=0.5)
    losses = compute_loss(cfg, out.rewards[:4], out.rewards[4:], logps_chosen=out.response_logps[:4])
    losses["loss"].backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is None or bool(torch.isfinite(g).all()) for g in grads.values())
    assert grads["lm.model.layers.0.self_attn.q_proj.weight"].abs().sum() > 0
    assert grads["reward_head.1.weight"].abs().sum() > 0 and grads["reward_head.3.weight"].abs().sum() > 0
    lm_head_grad = grads["lm.lm_head.weight"]
    if loss_name == "bt":
        assert lm_head_grad is None or lm_head_grad.abs().sum() == 0
    else:
        assert lm_head_grad.abs().sum() > 0


def test_grm_dpo_reference_stays_frozen(base_dir, tokenizer):
    policy = fresh_model(base_dir).train()
    reference = policy.frozen_reference()
    before = {k: v.clone() for k, v in reference.state_dict().items()}
    policy_before = policy.lm.lm_head.weight.detach().clone()
    assert all(not p.requires_grad for p in reference.parameters()) and not reference.training
    pairs = tiny_pairs_df(4)
    seqs = [encode_prompt_response(tokenizer, p, r, 64)
            for side in ("chosen", "rejected") for p, r in zip(pairs["prompt"], pairs[side])]
    batch = padded_batch(seqs, "right", tokenizer.pad_token_id)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=1e-2)
    cfg = LossConfig(name="grm_dpo", alpha=0.5, beta=1.0)
    for _ in range(3):
        out = policy(**batch, compute_logps=True)
        with torch.no_grad():
            ref = reference.response_logps(batch["input_ids"], batch["response_mask"], batch["attention_mask"])
        assert not ref.requires_grad
        losses = compute_loss(cfg, out.rewards[:4], out.rewards[4:], out.response_logps[:4], out.response_logps[4:],
                              ref[:4], ref[4:])
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    after = reference.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(p.grad is None for p in reference.parameters())
    assert not torch.equal(policy_before, policy.lm.lm_head.weight)


def test_save_and_load_restore_exactly(base_dir, tokenizer, tmp_path):
    model = fresh_model(base_dir, head="mlp")
    model.save_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    config = json.loads((tmp_path / "rm" / REWARD_CONFIG_FILE).read_text())
    assert config["head_type"] == "mlp" and config["hidden_size"] == 32 and config["base_model"] == str(base_dir)
    assert (tmp_path / "rm" / REWARD_HEAD_FILE).exists() and list((tmp_path / "rm").glob("model*.safetensors"))
    loaded = load_reward_model(tmp_path / "rm")
    assert isinstance(loaded, RewardModel) and loaded.head_type == "mlp"
    for (k, v), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)


def test_saved_model_scores_identically_in_fresh_process(base_dir, tokenizer, tmp_path):
    model = fresh_model(base_dir)
    model.save_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    pairs = tiny_pairs_df(6)
    pairs.to_json(tmp_path / "pairs.json", orient="records")
    expected = score_pairs(model, tokenizer, pairs, batch_size=4, progress=False)
    script = textwrap.dedent(f"""
        import pandas as pd
        from transformers import AutoTokenizer
        from rewardlab.modeling import load_reward_model
        from rewardlab.scoring import score_pairs
        model = load_reward_model({str(tmp_path / "rm")!r})
        tokenizer = AutoTokenizer.from_pretrained({str(tmp_path / "rm")!r})
        pairs = pd.read_json({str(tmp_path / "pairs.json")!r}, orient="records", dtype={{"id": str}})
        score_pairs(model, tokenizer, pairs, batch_size=4, progress=False).to_json(
            {str(tmp_path / "scores.json")!r}, orient="records", double_precision=15)
    """)
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    got = pd.read_json(tmp_path / "scores.json", orient="records", dtype={"id": str})
    assert list(got["id"]) == list(expected["id"])
    for column in ("reward_chosen", "reward_rejected", "hidden_norm_chosen"):
        assert got[column].to_numpy() == pytest.approx(expected[column].to_numpy(), abs=1e-6)


def test_lora_model_is_merged_when_saved(base_dir, tokenizer, tmp_path):
    from peft import LoraConfig, get_peft_model

    model = fresh_model(base_dir)
    model.lm = get_peft_model(model.lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    with torch.no_grad():
        for name, param in model.lm.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.5)  # make the adapters change the outputs
    assert model.is_peft
    batch = padded_batch(encoded_sequences(tokenizer, 3), "right", tokenizer.pad_token_id)
    with torch.no_grad():
        expected = model.eval()(**batch, compute_logps=True)
        plain = RewardModel(build_tiny_llama(tokenizer, seed=0), reward_head=model.reward_head).eval()(**batch)
    assert not torch.allclose(expected.rewards, plain.rewards, atol=1e-4)
    model.save_pretrained(tmp_path / "rm")
    assert model.is_peft  # saving merged a copy, so training can go on with the adapters
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert not loaded.is_peft
    with torch.no_grad():
        got = loaded.eval()(**batch, compute_logps=True)
    assert torch.allclose(got.rewards, expected.rewards, atol=TOL)
    assert torch.allclose(got.response_logps, expected.response_logps, atol=1e-4)


def test_ensemble_mean_min_and_persistence(base_dir, tokenizer, tmp_path):
    members = [fresh_model(base_dir, seed=s) for s in (1, 2, 3)]
    batch = padded_batch(encoded_sequences(tokenizer, 4), "right", tokenizer.pad_token_id)
    with torch.no_grad():
        each = torch.stack([m(**batch).rewards for m in members])
        mean_out = RewardEnsemble(members, reduce="mean")(**batch, compute_logps=True)
        min_out = RewardEnsemble(members, reduce="min")(**batch)
        first = members[0](**batch, compute_logps=True)
    assert torch.allclose(mean_out.rewards, each.mean(0), atol=1e-6)
    assert torch.equal(min_out.rewards, each.min(0).values)
    assert torch.equal(mean_out.last_hidden, first.last_hidden)
    assert torch.allclose(mean_out.response_logps, first.response_logps)
    RewardEnsemble(members, reduce="min").save_pretrained(tmp_path / "ens", tokenizer=tokenizer)
    assert (tmp_path / "ens" / ENSEMBLE_CONFIG_FILE).exists()
    loaded = load_reward_model(tmp_path / "ens")
    assert isinstance(loaded, RewardEnsemble) and loaded.reduce == "min" and len(loaded.members) == 3
    with torch.no_grad():
        assert torch.equal(loaded.eval()(**batch).rewards, min_out.rewards)
    with pytest.raises(ValueError, match="reduction"):
        RewardEnsemble(members, reduce="median")


def test_load_options_reach_from_pretrained(base_dir, tokenizer, tmp_path):
    assert lm_load_args({"dtype": "bfloat16", "attn_implementation": None, "batch_size": 8}) == {"dtype": "bfloat16"}
    fresh_model(base_dir).save_pretrained(tmp_path / "rm", tokenizer=tokenizer)
    loaded = load_reward_model(tmp_path / "rm", **lm_load_args({"dtype": "bfloat16",
                                                                "attn_implementation": "eager"}))
    assert loaded.attention_implementation() == "eager"
    assert {p.dtype for p in loaded.lm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in loaded.reward_head.parameters()} == {torch.float32}
    assert load_reward_model(tmp_path / "rm").attention_implementation() == "sdpa"
    with pytest.raises(ValueError, match=r"ood_eval\.dtype: 'fp8'"):
        lm_load_args({"dtype": "fp8"}, "ood_eval")


def test_load_reward_model_rejects_other_directories(tmp_path):
    with pytest.raises(FileNotFoundError, match="reward_config.json"):
        load_reward_model(tmp_path)


def test_sequence_without_real_token_is_rejected(base_dir):
    model = fresh_model(base_dir)
    with pytest.raises(ValueError, match="no real token"):
        model(torch.tensor([[5, 6], [7, 8]]), attention_mask=torch.tensor([[1, 1], [0, 0]]))
    with pytest.raises(ValueError, match="response_mask"):
        model(torch.tensor([[5, 6]]), compute_logps=True)
