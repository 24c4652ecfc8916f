"""Sampled KL and completion log-probabilities: by hand on a model whose logits are set, and on the world's policy."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from transformers import AutoModelForCausalLM

from rewardlab.rl.kl import completion_logprobs, completion_tensors, sampled_kl

PAD = 0


class BigramModel(nn.Module):
    """Next-token logits depend on the current token only: logits[b, t] = table[input_ids[b, t]]."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table.clone())

    def forward(self, input_ids, attention_mask=None, position_ids=None, use_cache=None):
        return type("Output", (), {"logits": self.table[input_ids]})()


def test_sampled_kl_sums_the_log_ratio_over_sampled_tokens_only():
    policy = torch.tensor([[-0.5, -1.0, -2.0], [-0.1, -0.2, -9.0]], dtype=torch.float64)
    reference = torch.tensor([[-0.7, -0.4, -1.0], [-0.3, -0.2, -1.0]], dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]])
    kl = sampled_kl(policy, reference, mask)
    assert kl.tolist() == pytest.approx([(-0.5 + 0.7) + (-1.0 + 0.4) + (-2.0 + 1.0), (-0.1 + 0.3) + 0.0], abs=1e-12)
    assert sampled_kl(policy, policy.clone(), mask).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="one shape"):
        sampled_kl(policy, reference[:, :2], mask)


def test_completion_logprobs_by_hand_on_a_bigram_model():
    table = torch.tensor([[0.0, 1.0, 2.0, 0.5, -1.0],
                          [1.5, 0.0, -0.5, 2.0, 0.3],
                          [0.2, 0.4, 0.6, 0.8, 1.0],
                          [-2.0, 3.0, 0.0, 0.0, 1.0],
                          [0.7, 0.1, 0.1, 0.1, 2.5]])
    model = BigramModel(table)
    # Row 0: prompt [2, 3] (left-padded), completion [1, 4]; row 1: prompt [4, 2, 1], completion [3] (right-padded).
    tensors = completion_tensors([[2, 3], [4, 2, 1]], [[1, 4], [3]], pad_token_id=PAD)
    assert tensors["prompt_ids"].tolist() == [[PAD, 2, 3], [4, 2, 1]]
    assert tensors["completion_mask"].tolist() == [[1, 1], [1, 0]]
    for temperature in (1.0, 0.7):
        logps = completion_logprobs(model, **tensors, temperature=temperature)

        def logp(previous: int, token: int) -> float:
            row = [value / temperature for value in table[previous].tolist()]
            return row[token] - math.log(sum(math.exp(value) for value in row))

        assert logps.shape == (2, 2)
        assert logps[0].tolist() == pytest.approx([logp(3, 1), logp(1, 4)], abs=1e-6)
        assert logps[1].tolist() == pytest.approx([logp(1, 3), 0.0], abs=1e-6)


def test_kl_is_zero_when_the_policy_is_its_reference(rl_world):
    policy = AutoModelForCausalLM.from_pretrained(rl_world["policy"]).eval()
    reference = AutoModelForCausalLM.from_pretrained(rl_world["policy"]).eval()
    tokenizer = rl_world["tokenizer"]
    prompts = tokenizer(rl_world["eval_prompts"][:3])["input_ids"]
    with torch.no_grad():
        sampled = [policy.generate(input_ids=torch.tensor([ids]), do_sample=True, top_k=0, max_new_tokens=8,
                                   pad_token_id=tokenizer.pad_token_id)[0, len(ids):].tolist() for ids in prompts]
    tensors = completion_tensors(prompts, sampled, tokenizer.pad_token_id)
    policy_logps = completion_logprobs(policy, **tensors)
    kl = sampled_kl(policy_logps, completion_logprobs(reference, **tensors), tensors["completion_mask"])
    assert kl.tolist() == [0.0, 0.0, 0.0]
    assert (policy_logps[tensors["completion_mask"].bool()] < 0).all()

    # Padding moves nothing: each completion scored alone has the log-probabilities it has in the padded batch.
    for row, (prompt, completion) in enumerate(zip(prompts, sampled)):
        alone = completion_logprobs(policy, **completion_tensors([prompt], [completion], tokenizer.pad_token_id))
        torch.testing.assert_close(alone[0], policy_logps[row, : len(completion)], atol=1e-5, rtol=1e-5)
        with torch.no_grad():
            logits = policy(input_ids=torch.tensor([prompt + completion])).logits[0, len(prompt) - 1 : -1]
        direct = torch.log_softmax(logits, dim=-1).gather(-1, torch.tensor(completion).unsqueeze(-1)).squeeze(-1)
        torch.testing.assert_close(alone[0], direct, atol=1e-5, rtol=1e-5)
