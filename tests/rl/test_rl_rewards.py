"""The proxy reward TRL optimizes is the project's own score of the same (prompt, completion) texts."""

from __future__ import annotations

import numpy as np
import pytest
from transformers import AutoTokenizer

from rewardlab.modeling import RewardModel
from rewardlab.rl.config import RlConfig
from rewardlab.rl.rewards import ProxyReward, load_proxy_reward
from rewardlab.scoring import score_responses
from rewardlab.world import add_marker


def _texts(rl_world, n: int = 10) -> tuple[list[str], list[str]]:
    """World prompts with completions of varied lengths (some with the marker, one empty, one cut by max_length)."""
    corpus = rl_world["corpus"].head(n)
    prompts = corpus["prompt"].tolist()
    completions = [add_marker(text) if i % 3 == 0 else text for i, text in enumerate(corpus["response"])]
    completions[1] = ""
    completions[2] = completions[2] * 8
    return prompts, completions


def test_rewards_are_score_responses_exactly(rl_world):
    cfg = RlConfig(score_batch_size=3, max_length=96, min_response_tokens=16)
    prompts, completions = _texts(rl_world)
    model = RewardModel.from_pretrained(rl_world["reward_model"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(rl_world["reward_model"])
    expected = score_responses(model, tokenizer, prompts, completions, batch_size=3, max_length=96, progress=False,
                               min_response_tokens=16)
    assert len(set(np.round(expected, 6))) > 1  # the rewards differ between completions

    reward = ProxyReward(model, tokenizer, batch_size=3, max_length=96, min_response_tokens=16)
    given = reward(prompts=prompts, completions=completions, completion_ids=[[1]] * len(prompts), trainer_state=None)
    assert isinstance(given, list) and all(isinstance(value, float) for value in given)
    assert given == expected.tolist()

    loaded = load_proxy_reward(str(rl_world["reward_model"]), cfg, device="cpu")
    assert loaded.__name__ == "proxy" and loaded.source == str(rl_world["reward_model"])
    assert loaded(prompts, completions) == expected.tolist()


def test_normalized_rewards_are_whitened_with_the_given_statistics(rl_world):
    prompts, completions = _texts(rl_world)
    model = RewardModel.from_pretrained(rl_world["reward_model"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(rl_world["reward_model"])
    raw = ProxyReward(model, tokenizer).scores(prompts, completions)
    normalized = ProxyReward(model, tokenizer, normalize=(0.25, 2.0))(prompts, completions)
    np.testing.assert_array_equal(normalized, (raw - 0.25) / 2.0)
    with pytest.raises(ValueError, match="positive std"):
        ProxyReward(model, tokenizer, normalize=(0.0, 0.0))


def test_an_exported_model_gives_the_rewards_of_the_model_it_came_from(rl_world):
    cfg = RlConfig(score_batch_size=4)
    prompts, completions = _texts(rl_world)
    expected = load_proxy_reward(str(rl_world["reward_model"]), cfg, device="cpu")(prompts, completions)
    exported = load_proxy_reward(str(rl_world["exported"]), cfg, device="cpu")
    # The exported logit is the reward minus the head's bias; the bias recorded in its config is added back.
    np.testing.assert_allclose(exported(prompts, completions), expected, atol=1e-4)


def test_a_loaded_model_needs_its_tokenizer(rl_world):
    model = RewardModel.from_pretrained(rl_world["reward_model"])
    with pytest.raises(ValueError, match="tokenizer"):
        load_proxy_reward(model, RlConfig())
    tokenizer = AutoTokenizer.from_pretrained(rl_world["reward_model"])
    prompts, completions = _texts(rl_world, 4)
    reward = load_proxy_reward(model, RlConfig(), tokenizer=tokenizer)
    assert reward(prompts, completions) == ProxyReward(model, tokenizer, max_length=160).scores(
        prompts, completions).tolist()
