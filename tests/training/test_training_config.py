import pytest

from rewardlab.losses import LossConfig
from rewardlab.training import TrainConfig


def test_from_dict_builds_nested_loss_config_and_round_trips():
    cfg = TrainConfig.from_dict({"loss": {"name": "grm_sft", "alpha": 0.05}, "tuning": "lora", "lora_r": 8,
                                 "max_steps": 10, "mixed_precision": "bf16"})
    assert isinstance(cfg.loss, LossConfig)
    assert (cfg.loss.name, cfg.loss.alpha, cfg.lora_r, cfg.lora_alpha) == ("grm_sft", 0.05, 8, 64)
    assert cfg.lora_target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg


def test_unknown_keys_are_named():
    with pytest.raises(ValueError, match="learning_rte"):
        TrainConfig.from_dict({"learning_rte": 1e-4})
    with pytest.raises(ValueError, match="alfa"):
        TrainConfig.from_dict({"loss": {"name": "grm_sft", "alfa": 0.1}})


@pytest.mark.parametrize("key, value", [("head", "deep"), ("tuning", "qlora"), ("mixed_precision", "fp16"),
                                        ("reference", "none"), ("per_device_batch_size", 0),
                                        ("warmup_ratio", 1.5), ("learning_rate", 0.0), ("dtype", "fp8"),
                                        ("attn_implementation", " ")])
def test_invalid_values_are_refused(key, value):
    with pytest.raises(ValueError, match=key):
        TrainConfig.from_dict({key: value})


@pytest.mark.parametrize("loss", ["grm_sft", "grm_sft_plain", "grm_dpo", "grm_dpo_noref"])
def test_frozen_tuning_refuses_grm_losses(loss):
    with pytest.raises(ValueError, match="frozen"):
        TrainConfig.from_dict({"tuning": "frozen", "loss": {"name": loss}})
    TrainConfig.from_dict({"tuning": "frozen", "loss": {"name": "bsr"}})  # reward-only losses are fine


def test_config_hash_tracks_what_changes_the_weights():
    base = TrainConfig.from_dict({"learning_rate": 1e-4})
    same = TrainConfig.from_dict({"learning_rate": 1e-4, "progress": False, "eval_every": 7,
                                  "checkpoint_every": 3, "keep_checkpoints": 5})
    assert base.config_hash() == same.config_hash()
    assert base.config_hash() != TrainConfig.from_dict({"learning_rate": 2e-4}).config_hash()
    assert base.config_hash() != TrainConfig.from_dict({"learning_rate": 1e-4, "loss": {"name": "bsr"}}).config_hash()
    assert base.config_hash({"data": "a"}) != base.config_hash({"data": "b"})
    # Load options join the hash only when set, so runs stored before they existed still resume.
    unset = TrainConfig.from_dict({"learning_rate": 1e-4, "dtype": None, "attn_implementation": None})
    assert unset.config_hash() == base.config_hash()
    for key, value in (("dtype", "bfloat16"), ("attn_implementation", "eager")):
        assert TrainConfig.from_dict({"learning_rate": 1e-4, key: value}).config_hash() != base.config_hash()


def test_numbers_written_as_strings_are_normalized():
    cfg = TrainConfig.from_dict({"learning_rate": "1e-5", "per_device_batch_size": "8"})
    assert cfg.learning_rate == 1e-5 and cfg.per_device_batch_size == 8
    assert cfg.config_hash() == TrainConfig.from_dict({"learning_rate": 1e-5, "per_device_batch_size": 8}).config_hash()
    with pytest.raises(ValueError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": "fast"})
