"""The grm_train nodes: variant resolution and an ensemble of K members trained with consecutive seeds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_tiny import save_tiny_base, tiny_pairs_df  # noqa: E402

from rewardlab.modeling import RewardEnsemble, load_reward_model  # noqa: E402
from rewardlab.config import GrmTrainConfig  # noqa: E402
from rewardlab.errors import ParameterError  # noqa: E402
from rewardlab.pipelines.grm_train.nodes import train_reward_models  # noqa: E402

PARAMS = {
    "variant": "grm_sft",
    "seed": 3,
    "noise_rate": 0.0,
    "train": {"per_device_batch_size": 4, "max_length": 64, "learning_rate": 1e-3, "num_epochs": 1,
              "checkpoint_every": None, "eval_every": 100, "progress": False},
    "variants": {"bt": {"loss": {"name": "bt"}}, "grm_sft": {"loss": {"name": "grm_sft", "alpha": 0.05}}},
}


def test_variant_overrides_the_shared_block():
    cfg = GrmTrainConfig.from_dict(PARAMS).train_config(member=2)
    assert (cfg.loss.name, cfg.loss.alpha, cfg.loss.beta) == ("grm_sft", 0.05, 0.1)  # beta: the default
    assert cfg.seed == 5 and cfg.per_device_batch_size == 4
    with pytest.raises(ParameterError, match=r"grm_train\.variant must be one of \['bt', 'grm_sft'\], got 'nope'"):
        GrmTrainConfig.from_dict(PARAMS | {"variant": "nope"}, "grm_train")


def test_ensemble_members_differ_and_reduce_as_configured(tmp_path):
    base, _ = save_tiny_base(tmp_path / "base")
    pairs = tiny_pairs_df(16)
    params = PARAMS | {"ensemble_size": 2, "ensemble_reduce": "min", "state_dir": str(tmp_path / "state")}
    bundle, history = train_reward_models(str(base), pairs, pairs.head(4), {"grm_train": params})
    model = bundle["model"]
    assert isinstance(model, RewardEnsemble) and model.reduce == "min"
    assert set(history["member"]) == {0, 1}
    heads = [m.reward_head[-1].weight for m in model.members]
    assert not torch.equal(heads[0], heads[1])  # seeds 3 and 4 drew different heads

    model.save_pretrained(tmp_path / "saved", tokenizer=bundle["tokenizer"])
    reloaded = load_reward_model(str(tmp_path / "saved"))
    assert isinstance(reloaded, RewardEnsemble) and reloaded.reduce == "min"
