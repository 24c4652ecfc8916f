"""Packed and padded batches give the same rewards, S(y) and gradients; the chunked S(y) equals the direct
full-logits formula; packing is refused (and training falls back to padding) where attention would mix the
packed sequences."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F
from helpers_tiny import build_tiny_llama, build_tiny_tokenizer, tiny_pairs_df
from transformers import AttentionInterface, AutoConfig, AutoModelForCausalLM, Qwen2Config, Qwen2ForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from rewardlab.losses import LossConfig, compute_loss
from rewardlab.modeling import RewardModel
from rewardlab.packing import PACKING_MODEL_TYPES, PackingNotSupportedError
from rewardlab.training import TrainConfig, train_reward_model
from rewardlab.training.data import collate_packed, collate_padded, model_inputs, tokenize_pairs

FAMILIES = ("llama", "qwen2")
# A kernel registered by name receives no attention mask from transformers: it cannot keep packed rows apart.
MASKLESS_KERNEL = "rewardlab_test_maskless_sdpa"
AttentionInterface.register(MASKLESS_KERNEL, sdpa_attention_forward)
# One bf16 rounding step (8 bits of mantissa) relative to S(y); measured errors on these models are ~6e-5.
BF16_RTOL = 2.0 ** -8


@pytest.fixture(scope="module")
def tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture(scope="module")
def examples(tokenizer):
    examples = tokenize_pairs(tiny_pairs_df(6), tokenizer, max_length=64)
    lengths = {len(e.chosen_ids) for e in examples} | {len(e.rejected_ids) for e in examples}
    assert len(lengths) > 3  # padding is really exercised
    return examples


def tiny_lm(family: str, tokenizer, attn: str = "sdpa", seed: int = 0):
    torch.manual_seed(seed)
    if family == "llama":
        return build_tiny_llama(tokenizer, seed=seed, attn_implementation=attn)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, pad_token_id=tokenizer.pad_token_id, attn_implementation=attn)
    return Qwen2ForCausalLM(config).eval()


def tiny_reward_model(family: str, tokenizer, attn: str = "sdpa", seed: int = 0) -> RewardModel:
    lm = tiny_lm(family, tokenizer, attn, seed)
    torch.manual_seed(seed + 1)
    model = RewardModel(lm).eval()
    assert model.attention_implementation() == attn
    return model


def sequences(examples):
    return [(e.chosen_ids, e.chosen_response_mask) for e in examples] + [
        (e.rejected_ids, e.rejected_response_mask) for e in examples]


def direct_logps(lm, ids, response_mask) -> torch.Tensor:
    """S(y) of one unpadded sequence from the LM's own full logits: sum over response tokens of log p(token)."""
    logprobs = F.log_softmax(lm(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    targets = torch.tensor(ids[1:])
    picked = logprobs[:-1].gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (picked * torch.tensor(response_mask[1:], dtype=picked.dtype)).sum()


# ------------------------------------------------------------------------------- packed == padded
@pytest.mark.parametrize("attn", ["sdpa", "eager"])
@pytest.mark.parametrize("family", FAMILIES)
def test_packed_and_padded_give_the_same_rewards_and_logps(family, attn, tokenizer, examples):
    model = tiny_reward_model(family, tokenizer, attn)
    assert model.supports_packing()
    with torch.no_grad():
        padded = model(**model_inputs(collate_padded(examples, tokenizer.pad_token_id)), compute_logps=True)
        packed = model(**model_inputs(collate_packed(examples)), compute_logps=True)
        alone = [model(torch.tensor([ids])).rewards[0] for ids, _ in sequences(examples)]
    torch.testing.assert_close(packed.rewards, padded.rewards, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.last_hidden, padded.last_hidden, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.response_logps, padded.response_logps, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(padded.rewards, torch.stack(alone), atol=1e-5, rtol=1e-5)
    assert bool((padded.response_logps < 0).all())


@pytest.mark.parametrize("family", FAMILIES)
def test_packed_and_padded_give_the_same_gradients(family, tokenizer, examples):
    cfg = LossConfig(name="grm_dpo_noref", alpha=0.3)
    n_pairs = len(examples)
    grads = {}
    for layout, batch in (("padded", collate_padded(examples, tokenizer.pad_token_id)),
                          ("packed", collate_packed(examples))):
        model = tiny_reward_model(family, tokenizer)
        out = model(**model_inputs(batch), compute_logps=True)
        s = out.response_logps
        loss = compute_loss(cfg, out.rewards[:n_pairs], out.rewards[n_pairs:], s[:n_pairs], s[n_pairs:])["loss"]
        loss.backward()
        grads[layout] = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    assert grads["padded"].keys() == grads["packed"].keys()
    assert any("lm_head" in name for name in grads["padded"])  # the S(y) term reaches the LM head
    for name, grad in grads["padded"].items():
        torch.testing.assert_close(grads["packed"][name], grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.slow
def test_flex_attention_packs_on_cpu_forward(tokenizer, examples):
    """flex_attention keeps packed sequences apart; on CPU, torch 2.13 compiles it for the first input shape only
    and has no backward, so the check is one forward pass (training with flex needs a GPU)."""
    model = tiny_reward_model("llama", tokenizer, "flex_attention")
    assert model.supports_packing()
    with torch.no_grad():
        try:
            packed = model(**model_inputs(collate_packed(examples)), compute_logps=True)
        except torch._inductor.exc.InductorError as error:  # a CPU compiler failure, not a packing result
            pytest.skip(f"flex_attention does not compile on this CPU: {str(error)[:200]}")
    model.causal_lm().set_attn_implementation("eager")
    with torch.no_grad():
        padded = model(**model_inputs(collate_padded(examples, tokenizer.pad_token_id)), compute_logps=True)
    torch.testing.assert_close(packed.rewards, padded.rewards, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.response_logps, padded.response_logps, atol=1e-4, rtol=1e-5)


def _tiny_config(model_type: str, attn: str):
    config = AutoConfig.for_model(model_type)
    sizes = {"vocab_size": 120, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
             "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64, "n_embd": 32,
             "n_layer": 2, "n_head": 4, "n_positions": 64, "head_dim": 8, "rotary_dim": 4, "pad_token_id": 0,
             "moe_intermediate_size": 16, "num_experts": 4, "num_local_experts": 4, "num_experts_per_tok": 2}
    for key, value in sizes.items():
        if hasattr(config, key):
            setattr(config, key, value)
    config._attn_implementation = attn
    return config


@pytest.mark.parametrize("model_type", PACKING_MODEL_TYPES)
def test_every_architecture_listed_for_packing_keeps_sequences_apart(model_type):
    seqs = [list(range(3, 3 + n)) for n in (7, 12, 5, 9)]
    for attn in ("sdpa", "eager"):
        torch.manual_seed(0)
        try:
            lm = AutoModelForCausalLM.from_config(_tiny_config(model_type, attn), attn_implementation=attn)
        except ValueError as error:  # e.g. "does not support ... scaled_dot_product_attention"
            if attn == "sdpa" and "support" in str(error):
                continue
            raise
        model = RewardModel(lm).eval()
        assert model.supports_packing(), model.packing_problem()
        ids = [t for s in seqs for t in s]
        positions = [p for s in seqs for p in range(len(s))]
        last = torch.cumsum(torch.tensor([len(s) for s in seqs]), 0) - 1
        with torch.no_grad():
            packed = model(torch.tensor([ids]), position_ids=torch.tensor([positions]), last_token_index=last)
            alone = torch.cat([model(torch.tensor([s])).last_hidden for s in seqs])
        torch.testing.assert_close(packed.last_hidden, alone, atol=1e-4, rtol=1e-4)


# ------------------------------------------------------------------------------- where packing is refused
def _packed_hidden_mixes(model: RewardModel, examples, pad_id: int) -> bool:
    """Whether the packed row's hidden states differ from the padded ones (attention crossed sequences)."""
    packed, padded = collate_packed(examples), collate_padded(examples, pad_id)
    with torch.no_grad():
        packed_hidden = model._final_hidden(packed["input_ids"], None, packed["position_ids"])
        padded_hidden = model._final_hidden(padded["input_ids"], padded["attention_mask"], None)
    flat = padded_hidden[padded["attention_mask"].bool()]
    return not torch.allclose(packed_hidden[0], flat, atol=1e-4)


def test_a_maskless_kernel_cannot_pack_and_says_so(tokenizer, examples):
    model = tiny_reward_model("llama", tokenizer, MASKLESS_KERNEL)
    assert not model.supports_packing()
    assert MASKLESS_KERNEL in model.packing_problem()
    assert _packed_hidden_mixes(model, examples, tokenizer.pad_token_id)  # why it is refused
    with pytest.raises(PackingNotSupportedError, match="packed batch refused.*cannot keep packed sequences apart"):
        model(**model_inputs(collate_packed(examples)), compute_logps=True)
    with torch.no_grad():  # the padded path is the fallback and agrees with sdpa
        padded = model(**model_inputs(collate_padded(examples, tokenizer.pad_token_id)), compute_logps=True)
        reference = tiny_reward_model("llama", tokenizer, "sdpa")(
            **model_inputs(collate_padded(examples, tokenizer.pad_token_id)), compute_logps=True)
    torch.testing.assert_close(padded.rewards, reference.rewards, atol=1e-5, rtol=1e-5)


def test_an_architecture_that_mixes_packed_sequences_is_refused(tokenizer, examples):
    """OPT derives positions from the attention mask, so restarting position ids do not separate sequences."""
    config = AutoConfig.for_model("opt", vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2,
                                  num_attention_heads=4, word_embed_proj_dim=32, max_position_embeddings=128,
                                  pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    model = RewardModel(AutoModelForCausalLM.from_config(config, attn_implementation="sdpa")).eval()
    assert not model.supports_packing() and "opt" in model.packing_problem()
    assert _packed_hidden_mixes(model, examples, tokenizer.pad_token_id)
    with pytest.raises(PackingNotSupportedError):
        model(**model_inputs(collate_packed(examples)))


def test_training_falls_back_to_padded_batches_when_the_model_cannot_pack(tokenizer, tmp_path, caplog):
    pairs = tiny_pairs_df(8)
    cfg = {"per_device_batch_size": 4, "max_length": 48, "max_steps": 2, "disable_dropout": True,
           "progress": False, "loss": {"name": "grm_sft"}}
    histories = {}
    for packing in (True, False):
        model = tiny_reward_model("llama", tokenizer, MASKLESS_KERNEL)
        with caplog.at_level(logging.WARNING, logger="rewardlab.training.loop"):
            _, histories[packing] = train_reward_model(model, tokenizer, pairs, None,
                                                       TrainConfig.from_dict({**cfg, "packing": packing}),
                                                       tmp_path / str(packing))
    assert "training on padded batches instead" in caplog.text and MASKLESS_KERNEL in caplog.text
    assert histories[True] == histories[False]


# ------------------------------------------------------------------------------- chunked S(y)
@pytest.mark.parametrize("chunk_size", [1, 7, 4096])
@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_logps_equal_the_full_logits_formula(family, chunk_size, tokenizer, examples):
    model = tiny_reward_model(family, tokenizer)
    model.logp_chunk_size = chunk_size
    seen_rows = []
    hook = model.causal_lm().get_output_embeddings().register_forward_hook(
        lambda module, args, output: seen_rows.append(output.reshape(-1, output.shape[-1]).shape[0]))
    with torch.no_grad():
        padded = model(**model_inputs(collate_padded(examples, tokenizer.pad_token_id)), compute_logps=True)
        packed = model(**model_inputs(collate_packed(examples)), compute_logps=True)
    hook.remove()
    assert seen_rows and max(seen_rows) <= chunk_size  # never more than a chunk of logits at once
    with torch.no_grad():
        expected = torch.stack([direct_logps(model.lm, ids, mask) for ids, mask in sequences(examples)])
    torch.testing.assert_close(padded.response_logps, expected, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(packed.response_logps, expected, atol=1e-4, rtol=1e-5)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_logps_have_the_gradient_of_the_full_logits_formula(family, tokenizer, examples):
    batch = collate_padded(examples[:3], tokenizer.pad_token_id)
    chunked = tiny_reward_model(family, tokenizer)
    chunked.logp_chunk_size = 5  # several recomputed chunks
    chunked(**model_inputs(batch), compute_logps=True).response_logps.sum().backward()
    direct = tiny_reward_model(family, tokenizer)
    torch.stack([direct_logps(direct.lm, ids, mask) for ids, mask in sequences(examples[:3])]).sum().backward()
    direct_grads = dict(direct.lm.named_parameters())
    for name, p in chunked.lm.named_parameters():
        torch.testing.assert_close(p.grad, direct_grads[name].grad, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("family", FAMILIES)
def test_chunked_logps_in_bf16_match_within_bf16_tolerance(family, tokenizer, examples):
    model = tiny_reward_model(family, tokenizer)
    with torch.no_grad():
        exact = torch.stack([direct_logps(model.lm, ids, mask) for ids, mask in sequences(examples)])
    model.lm.to(torch.bfloat16)
    model.logp_chunk_size = 7
    with torch.no_grad():
        padded = model(**model_inputs(collate_padded(examples, tokenizer.pad_token_id)), compute_logps=True)
        packed = model(**model_inputs(collate_packed(examples)), compute_logps=True)
        direct = torch.stack([direct_logps(model.lm, ids, mask) for ids, mask in sequences(examples)])
    for got in (padded.response_logps, packed.response_logps):
        assert got.dtype == torch.float32
        torch.testing.assert_close(got, direct, atol=0.0, rtol=BF16_RTOL)
        torch.testing.assert_close(got, exact, atol=0.0, rtol=BF16_RTOL)
