"""The scoring nodes of ood_eval and bon: the load options and the packed layout reach the model, and packed
scoring gives the padded scores."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_tiny import save_tiny_base, tiny_pairs_df  # noqa: E402

from rewardlab.modeling import RewardModel  # noqa: E402
from rewardlab.pipelines.bon.nodes import score_samples  # noqa: E402
from rewardlab.pipelines.ood_eval.nodes import score_eval_sets  # noqa: E402

PACKED = {"packing": True, "max_tokens_per_batch": 64, "attn_implementation": "eager"}


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    base, tokenizer = save_tiny_base(tmp_path_factory.mktemp("base"))
    torch.manual_seed(3)
    directory = tmp_path_factory.mktemp("rm") / "reward_model"
    RewardModel.from_base(base).save_pretrained(directory, tokenizer=tokenizer)
    return str(directory)


def _responses(pairs: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"prompt": pairs["prompt"], "response": pairs["chosen"], "gold": np.arange(len(pairs))})


def test_ood_eval_scores_the_same_packed_and_padded(reward_model_dir, monkeypatch):
    loaded = []
    original = RewardModel.from_pretrained.__func__

    def recording(cls, directory, *args, **kwargs):
        model = original(cls, directory, *args, **kwargs)
        loaded.append(model.attention_implementation())
        return model

    monkeypatch.setattr(RewardModel, "from_pretrained", classmethod(recording))
    sets = [tiny_pairs_df(6), tiny_pairs_df(5), tiny_pairs_df(4), tiny_pairs_df(3)]
    common = {"batch_size": 4, "max_length": 64}
    padded, padded_responses = score_eval_sets(reward_model_dir, *sets, _responses(sets[0]), {}, common)
    packed, packed_responses = score_eval_sets(reward_model_dir, *sets, _responses(sets[0]), {}, common | PACKED)
    assert loaded == ["sdpa", "eager"]
    assert list(packed["eval_set"]) == list(padded["eval_set"]) and len(packed) == 18
    for column in ("reward_chosen", "reward_rejected", "hidden_norm_chosen"):
        np.testing.assert_allclose(packed[column], padded[column], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(packed_responses["proxy"], padded_responses["proxy"], atol=1e-5, rtol=1e-5)


def test_bon_proxy_scores_the_same_packed_and_padded(reward_model_dir):
    pairs = tiny_pairs_df(5)
    samples = pd.DataFrame({"prompt_idx": np.repeat(np.arange(5), 2), "sample_idx": np.tile([0, 1], 5),
                            "prompt": np.repeat(pairs["prompt"].to_numpy(), 2),
                            "response": np.ravel(np.column_stack([pairs["chosen"], pairs["rejected"]]))})
    common = {"score_batch_size": 3, "max_length": 64, "gold": "world"}
    padded = score_samples(reward_model_dir, samples, common)
    packed = score_samples(reward_model_dir, samples, common | PACKED | {"dtype": "float32"})
    np.testing.assert_allclose(packed["proxy"], padded["proxy"], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(packed["gold"], padded["gold"])
