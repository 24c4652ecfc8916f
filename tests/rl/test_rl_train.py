"""Policy optimization with TRL against the proxy: curves and metrics, the gold kept out of the update, and a
killed run resumed to the result of an uninterrupted one."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, LlamaForCausalLM

from rewardlab.rl.config import RlConfig
from rewardlab.rl.monitor import CURVE_COLUMNS, has_marker, response_lengths
from rewardlab.rl.rewards import load_proxy_reward
from rewardlab.rl.train import train_policy, training_prompt_order
from rewardlab.world import GoldReward, add_marker

CHILD = Path(__file__).with_name("rl_child.py")
METRICS = ("proxy", "gold", "kl", "length", "marker_fraction")


def tiny_config(**overrides) -> RlConfig:
    return RlConfig.from_dict({"steps": 3, "prompts_per_step": 2, "group_size": 2, "max_new_tokens": 12,
                               "eval_every": 2, "save_every": 2, "num_eval_prompts": 2, "eval_samples_per_prompt": 2,
                               "learning_rate": 1e-2, **overrides})


def _train(rl_world, cfg: RlConfig, state_dir: Path, proxy=None, **kwargs):
    proxy = proxy if proxy is not None else load_proxy_reward(str(rl_world["reward_model"]), cfg, device="cpu")
    return train_policy(str(rl_world["policy"]), proxy, rl_world["train_prompts"], rl_world["eval_prompts"], cfg,
                        state_dir, **kwargs)


def _weights(model) -> dict[str, torch.Tensor]:
    return {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}


def _same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[name], b[name]) for name in a)


@pytest.fixture(scope="module")
def initial_weights(rl_world) -> dict[str, torch.Tensor]:
    return _weights(AutoModelForCausalLM.from_pretrained(rl_world["policy"]))


def test_marker_and_length_helpers():
    assert has_marker(add_marker(" Bread needs flour.")) and has_marker(" so, certainly! yes")
    assert not has_marker(" Bread needs flour.")
    assert response_lengths([[5, 6, 2, 7], [5, 6], []], eos_ids=[2]).tolist() == [2.0, 2.0, 0.0]


def test_prompt_order_covers_every_prompt_before_repeating_one():
    cfg = tiny_config(steps=5, prompts_per_step=3)
    order = training_prompt_order(["a", "b", "c", "d"], cfg)
    assert len(order) == 15 and sorted(order[:4]) == ["a", "b", "c", "d"] and sorted(order[4:8]) == ["a", "b", "c", "d"]
    assert order == training_prompt_order(["a", "b", "c", "d"], cfg)
    assert order != training_prompt_order(["a", "b", "c", "d"], tiny_config(steps=5, prompts_per_step=3, seed=1))


def test_a_run_returns_its_curves_and_logs_every_step(rl_world, initial_weights, tmp_path):
    logged: list[tuple[int, dict]] = []
    # No KL term: the trainer keeps no reference, so the KL is measured against a frozen copy of the policy.
    cfg = tiny_config(kl_coef=0.0)
    model, tokenizer, curves = _train(rl_world, cfg, tmp_path / "state",
                                      log_metrics=lambda metrics, step: logged.append((step, dict(metrics))))

    assert isinstance(model, LlamaForCausalLM) and not model.training and "forward" not in model.__dict__
    assert not _same_weights(_weights(model), initial_weights)
    assert tokenizer.eos_token_id is not None
    assert list(curves.columns) == CURVE_COLUMNS
    assert curves[curves["split"] == "train"]["step"].tolist() == [1, 2, 3]
    assert curves[curves["split"] == "eval"]["step"].tolist() == [0, 2, 3]  # step 0, every 2nd and the last

    assert [step for step, _ in logged] == [0, 1, 2, 3]
    keys = {step: set(metrics) for step, metrics in logged}
    train_keys, eval_keys = {f"train.{m}" for m in METRICS}, {f"eval.{m}" for m in METRICS}
    assert keys == {0: eval_keys, 1: train_keys, 2: train_keys | eval_keys, 3: train_keys | eval_keys}
    for step, metrics in logged:
        for key, value in metrics.items():
            split, name = key.split(".")
            row = curves[(curves["split"] == split) & (curves["step"] == step)].iloc[0]
            assert value == row[name]

    start = curves[(curves["split"] == "eval") & (curves["step"] == 0)].iloc[0]
    assert start["kl"] == 0.0  # the initial policy is its own reference
    assert curves["length"].between(0, cfg.max_new_tokens).all()
    assert curves["marker_fraction"].between(0, 1).all()
    assert curves[["proxy", "gold", "kl"]].notna().all().all()


class ScaledGold:
    """The world's gold, negated and a hundred times larger."""

    def score(self, prompts, responses):
        return -100.0 * GoldReward().score(prompts, responses)


def test_the_gold_never_enters_the_update(rl_world, initial_weights, tmp_path):
    cfg = tiny_config()
    model, _, curves = _train(rl_world, cfg, tmp_path / "world-gold", gold=GoldReward())
    scaled_model, _, scaled_curves = _train(rl_world, cfg, tmp_path / "scaled-gold", gold=ScaledGold())

    assert not _same_weights(_weights(model), initial_weights)  # the runs did learn
    assert _same_weights(_weights(model), _weights(scaled_model))
    for column in ("split", "step", "proxy", "kl", "length", "marker_fraction"):
        assert curves[column].tolist() == scaled_curves[column].tolist()
    # Same completions, each gold score the other's times -100: the gold saw them, the trainer did not.
    np.testing.assert_allclose(scaled_curves["gold"], -100.0 * curves["gold"], rtol=1e-12)
    assert not np.allclose(scaled_curves["gold"], curves["gold"])

    # Had the scaled gold reached the rewards, the update would have moved elsewhere.
    proxy = load_proxy_reward(str(rl_world["reward_model"]), cfg, device="cpu")

    def proxy_plus_scaled_gold(prompts, completions, **kwargs):
        return (proxy.scores(prompts, completions) + ScaledGold().score(prompts, completions)).tolist()

    leaked_model, _, _ = _train(rl_world, cfg, tmp_path / "leaked", proxy=proxy_plus_scaled_gold, gold=GoldReward())
    assert not _same_weights(_weights(leaked_model), _weights(model))


def test_a_finished_run_is_read_back_and_another_configuration_starts_afresh(rl_world, tmp_path):
    state = tmp_path / "state"
    cfg = tiny_config(steps=2, save_every=1)
    model, _, curves = _train(rl_world, cfg, state)
    (run_dir,) = state.glob("run-*")
    assert sorted(path.name for path in run_dir.glob("step-*")) == ["step-00000002"]  # older ones removed

    replayed: list[int] = []
    # Scoring batch size only changes speed: the same run, read back from its last checkpoint.
    again, _, again_curves = _train(rl_world, tiny_config(steps=2, save_every=1, score_batch_size=7), state,
                                    log_metrics=lambda metrics, step: replayed.append(step))
    assert _same_weights(_weights(again), _weights(model))
    pd.testing.assert_frame_equal(again_curves, curves)
    assert replayed == [0, 1, 2] and len(list(state.glob("run-*"))) == 1

    other, _, _ = _train(rl_world, tiny_config(steps=2, save_every=1, learning_rate=3e-3), state)
    assert len(list(state.glob("run-*"))) == 2
    assert not _same_weights(_weights(other), _weights(model))


def test_grpo_with_lora_returns_the_merged_policy(rl_world, initial_weights, tmp_path):
    cfg = tiny_config(algorithm="grpo", tuning="lora", steps=2, lora_r=4)
    model, _, curves = _train(rl_world, cfg, tmp_path / "state")
    assert type(model) is LlamaForCausalLM and set(_weights(model)) == set(initial_weights)
    assert not _same_weights(_weights(model), initial_weights)
    last_eval = curves[curves["split"] == "eval"].iloc[-1]
    assert last_eval["step"] == 2 and last_eval["kl"] != 0.0  # KL to the policy with its adapters disabled


def _run_child(rl_world, tmp_path: Path, name: str, config: dict, state_dir: Path,
               kill_at_step: int | None = None) -> subprocess.CompletedProcess:
    spec = {"policy": str(rl_world["policy"]), "proxy": str(rl_world["reward_model"]), "config": config,
            "train_prompts": rl_world["train_prompts"], "eval_prompts": rl_world["eval_prompts"],
            "state_dir": str(state_dir), "kill_at_step": kill_at_step,
            "weights_out": str(tmp_path / f"{name}.safetensors"), "curves_out": str(tmp_path / f"{name}.json")}
    spec_file = tmp_path / f"{name}-spec.json"
    spec_file.write_text(json.dumps(spec))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(CHILD), str(spec_file)], capture_output=True, text=True, timeout=300,
                          env=env)


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_result_of_an_uninterrupted_one(rl_world, tmp_path):
    config = tiny_config(steps=5, save_every=2).to_dict()
    whole = _run_child(rl_world, tmp_path, "whole", config, tmp_path / "state-whole")
    assert whole.returncode == 0, whole.stderr

    killed = _run_child(rl_world, tmp_path, "killed", config, tmp_path / "state", kill_at_step=3)
    assert killed.returncode == -9, killed.stderr  # SIGKILL after step 3's update; step 2 was saved
    (run_dir,) = (tmp_path / "state").glob("run-*")
    assert sorted(path.name for path in run_dir.glob("step-*")) == ["step-00000002"]
    assert not (tmp_path / "killed.safetensors").exists()
    # What a kill in the middle of the next save would leave: never taken for a checkpoint, cleared on resume.
    (run_dir / ".tmp-step-00000004" / "checkpoint-4").mkdir(parents=True)

    resumed = _run_child(rl_world, tmp_path, "resumed", config, tmp_path / "state")
    assert resumed.returncode == 0, resumed.stderr
    assert not (run_dir / ".tmp-step-00000004").exists()
    whole_weights = load_file(tmp_path / "whole.safetensors")
    assert _same_weights(whole_weights, load_file(tmp_path / "resumed.safetensors"))  # bit for bit
    whole_record = json.loads((tmp_path / "whole.json").read_text())
    resumed_record = json.loads((tmp_path / "resumed.json").read_text())
    assert whole_record["curves"] == resumed_record["curves"]  # every value equal
    assert whole_record["logged"] == [0, 1, 2, 3, 4, 5]
    assert resumed_record["logged"] == [0, 1, 2, 3, 4, 5]  # steps 0-2 restored and sent again, then 3-5 trained
