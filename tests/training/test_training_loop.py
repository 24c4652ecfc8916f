import math

import numpy as np
import pytest
import torch
from transformers import get_cosine_schedule_with_warmup
from training_helpers import assert_same_weights, fast_config, load_weights, separable_pairs, state_of

from rewardlab.modeling import RewardModel
from rewardlab.scoring import score_pairs
from rewardlab.training import BatchPlan, TrainingDivergedError, train_reward_model
from rewardlab.training.checkpoint import find_latest_checkpoint, list_checkpoints, load_checkpoint, read_meta
from rewardlab.training.tuning import apply_tuning, optimizer_groups


def test_same_seed_gives_identical_weights_and_history(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    cfg = fast_config(num_epochs=2, loss={"name": "grm_sft"})
    logged = []
    first, history1 = train_reward_model(path, tokenizer, pairs, pairs.iloc[:6], cfg, tmp_path / "a",
                                         log_metrics=lambda m, s: logged.append((s, m)))
    second, history2 = train_reward_model(path, tokenizer, pairs, pairs.iloc[:6], cfg, tmp_path / "b")
    assert_same_weights(state_of(first), state_of(second))
    assert history1 == history2 and len(history1) == 8
    assert [s for s, _ in logged] == list(range(0, 9))
    from rewardlab.training.data import tokenize_pairs, truncation_counts

    cut = {**truncation_counts(tokenize_pairs(pairs, tokenizer, cfg.max_length)),  # step 0: pairs max_length cut
           **truncation_counts(tokenize_pairs(pairs.iloc[:6], tokenizer, cfg.max_length), "eval_data.")}
    assert logged[0][1] == cut and cut["data.pairs"] == 16 and cut["eval_data.pairs"] == 6
    expected = {"loss", "bt", "reg", "accuracy", "reward_mean", "reward_std", "hidden_norm_dispersion",
                "learning_rate", "grad_norm", "logps_chosen_mean"}
    assert expected <= set(logged[1][1])
    assert "logps_rejected_mean" not in logged[1][1]  # GRM-SFT never computes S(y_r)
    assert {"eval_accuracy", "eval_loss"} <= set(history1[-1])  # evaluated at the end
    assert not first.training
    other, _ = train_reward_model(path, tokenizer, pairs, None, fast_config(num_epochs=2, seed=7,
                                  loss={"name": "grm_sft"}), tmp_path / "c")
    assert not torch.equal(state_of(other)["reward_head.1.weight"], state_of(first)["reward_head.1.weight"])


def test_loss_decreases_on_a_separable_task(tiny_base, tmp_path):
    path, tokenizer = tiny_base
    data = separable_pairs(32)
    cfg = fast_config(num_epochs=3, learning_rate=3e-3, eval_every=4)
    model, history = train_reward_model(path, tokenizer, data, data.iloc[:16], cfg, tmp_path)
    eval_losses = [h["eval_loss"] for h in history if "eval_loss" in h]
    assert eval_losses[-1] < 0.5 * eval_losses[0]
    assert np.mean([h["loss"] for h in history[-4:]]) < np.mean([h["loss"] for h in history[:4]])
    assert history[-1]["eval_accuracy"] == 1.0
    scores = score_pairs(model, tokenizer, data.iloc[16:], batch_size=8, max_length=48, progress=False)
    assert (scores["reward_chosen"] > scores["reward_rejected"]).all()


def _changed(before, after):
    return {k for k in before if not torch.equal(before[k], after[k])}


def test_full_tuning_trains_the_lm_but_not_an_unused_lm_head(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    torch.manual_seed(0)
    model = RewardModel.from_base(path)
    before = state_of(model)
    trained, _ = train_reward_model(model, tokenizer, pairs, None, fast_config(max_steps=3), tmp_path)
    assert trained is model
    changed = _changed(before, state_of(trained))
    assert changed == set(before) - {"lm.lm_head.weight"}


def test_lora_trains_adapters_and_head_only(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    torch.manual_seed(0)
    model = RewardModel.from_base(path)
    before = state_of(model)
    cfg = fast_config(max_steps=3, tuning="lora", lora_r=4, lora_alpha=8, lora_target_modules=["q_proj", "v_proj"],
                      loss={"name": "grm_sft"})
    trained, _ = train_reward_model(model, tokenizer, pairs, None, cfg, tmp_path)
    after = state_of(trained)
    assert after.keys() == before.keys() and not trained.is_peft  # adapters merged back into plain weights
    expected = {k for k in before if k.endswith(("q_proj.weight", "v_proj.weight"))} | \
        {"reward_head.1.weight", "reward_head.1.bias"}
    assert _changed(before, after) == expected


def test_frozen_tuning_trains_only_the_reward_head(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    torch.manual_seed(0)
    model = RewardModel.from_base(path, head="mlp")
    before = state_of(model)
    trained, _ = train_reward_model(model, tokenizer, pairs, None,
                                    fast_config(max_steps=3, tuning="frozen", head="mlp"), tmp_path)
    assert _changed(before, state_of(trained)) == {k for k in before if k.startswith("reward_head.")}


def test_grm_dpo_reference_stays_the_initial_model(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    common = {"num_epochs": 2, "disable_dropout": True, "checkpoint_every": 8,
              "loss": {"name": "grm_dpo", "alpha": 0.5, "beta": 0.5}}
    _, live = train_reward_model(path, tokenizer, pairs, None, fast_config(reference="model", **common),
                                 tmp_path / "model")
    _, table = train_reward_model(path, tokenizer, pairs, None, fast_config(reference="precomputed", **common),
                                  tmp_path / "pre")
    # The precomputed S_ref is the initial model's, computed once; a reference that drifted with
    # training would make the regularizer (and so every later step) differ.
    assert {"logps_chosen_mean", "logps_rejected_mean"} <= set(live[0])  # DPO forms read both sides
    for a, b in zip(live, table):
        assert a["reg"] == pytest.approx(b["reg"], abs=1e-4)
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-4)
    stored = torch.load(find_latest_checkpoint(tmp_path / "pre") / "extra.pt", weights_only=True)["reference_logps"]
    torch.manual_seed(0)
    initial = RewardModel.from_base(path).eval()
    from rewardlab.training.data import collate_padded, model_inputs, tokenize_pairs

    examples = tokenize_pairs(pairs, tokenizer, 48)
    with torch.no_grad():
        logps = initial(**model_inputs(collate_padded(examples, tokenizer.pad_token_id)),
                        compute_logps=True).response_logps
    torch.testing.assert_close(stored, torch.stack([logps[:16], logps[16:]], dim=1), atol=1e-4, rtol=1e-5)


def test_gradient_accumulation_matches_one_big_batch(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    common = {"max_steps": 4, "disable_dropout": True}
    _, big = train_reward_model(path, tokenizer, pairs, None, fast_config(per_device_batch_size=4, **common),
                                tmp_path / "big")
    _, accumulated = train_reward_model(path, tokenizer, pairs, None, fast_config(
        per_device_batch_size=2, gradient_accumulation_steps=2, **common), tmp_path / "acc")
    for a, b in zip(big, accumulated):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    cfg = fast_config(num_epochs=1, checkpoint_every=1, keep_checkpoints=5, loss={"name": "margin"})
    poisoned_row = int(BatchPlan(len(pairs), 4, seed=cfg.seed).global_batch(2)[0])  # used by step 3
    data = pairs.copy()
    data.loc[poisoned_row, "margin"] = math.inf
    with pytest.raises(TrainingDivergedError, match=r"step 3.*loss=inf") as error:
        train_reward_model(path, tokenizer, data, None, cfg, tmp_path)
    assert error.value.step == 3 and "step-00000002" in str(error.value)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000001", "step-00000002"]
    last = find_latest_checkpoint(tmp_path)
    assert last.name == "step-00000002" and read_meta(last)["step"] == 2
    weights = load_weights(last / "trainable.safetensors")
    assert weights and all(bool(torch.isfinite(w).all()) for w in weights.values())
    # Loadable the way a resumed run loads it: into a fresh model, optimizer and schedule.
    model = RewardModel.from_base(path)
    apply_tuning(model, cfg)
    optimizer = torch.optim.AdamW(optimizer_groups(model, 0.0), lr=cfg.learning_rate)
    schedule = get_cosine_schedule_with_warmup(optimizer, 1, 4)
    state = load_checkpoint(last, process_index=0, model=model, optimizer=optimizer, scheduler=schedule)
    assert state["meta"]["step"] == 2 and len(state["history"]) == 2
    assert optimizer.state_dict()["state"][0]["step"] == 2 and schedule.last_epoch == 2
    assert torch.equal(model.reward_head[1].weight, weights["reward_head.1.weight"])


def test_finished_run_resumes_at_its_end_and_a_changed_config_starts_fresh(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    cfg = fast_config(max_steps=4, checkpoint_every=2)
    model, history = train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path)
    logged = []
    again, history_again = train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path,
                                              log_metrics=lambda m, s: logged.append(s))
    assert logged == [] and history_again == history
    assert_same_weights(state_of(model), state_of(again))
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]

    changed = fast_config(max_steps=4, checkpoint_every=2, learning_rate=5e-4)
    train_reward_model(path, tokenizer, pairs, None, changed, tmp_path)
    (fresh,) = [p for p in tmp_path.iterdir() if p.name.startswith("config-")]
    assert read_meta(find_latest_checkpoint(fresh))["config_hash"] != read_meta(find_latest_checkpoint(tmp_path))[
        "config_hash"]
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-00000002", "step-00000004"]


def test_incomplete_checkpoints_are_ignored(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    cfg = fast_config(max_steps=2, checkpoint_every=1)
    (tmp_path / "step-00000009").mkdir(parents=True)  # no meta.json: a crash mid-copy, never complete
    (tmp_path / ".tmp-step-00000001").mkdir()
    (tmp_path / ".tmp-step-00000001" / "trainable.safetensors").write_bytes(b"partial")
    _, history = train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path)
    assert len(history) == 2
    assert not (tmp_path / ".tmp-step-00000001").exists()
    assert (tmp_path / "latest").read_text() == "step-00000002"


def test_gradient_checkpointing_does_not_change_the_result(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    common = {"max_steps": 3, "disable_dropout": True, "loss": {"name": "grm_sft"}}
    plain, plain_history = train_reward_model(path, tokenizer, pairs, None, fast_config(**common), tmp_path / "a")
    ckpt, ckpt_history = train_reward_model(path, tokenizer, pairs, None,
                                            fast_config(gradient_checkpointing=True, **common), tmp_path / "b")
    for a, b in zip(plain_history, ckpt_history):
        assert a["loss"] == pytest.approx(b["loss"], abs=1e-6)
    assert not ckpt.lm.is_activation_checkpointing  # switched off again for inference
    for name, tensor in plain.state_dict().items():
        torch.testing.assert_close(ckpt.state_dict()[name], tensor, atol=1e-5, rtol=1e-5)


def test_bf16_mixed_precision_trains_close_to_fp32(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    common = {"max_steps": 3, "disable_dropout": True}
    _, full = train_reward_model(path, tokenizer, pairs, pairs.iloc[:4], fast_config(**common), tmp_path / "a")
    _, half = train_reward_model(path, tokenizer, pairs, pairs.iloc[:4],
                                 fast_config(mixed_precision="bf16", **common), tmp_path / "b")
    assert all(math.isfinite(h["loss"]) for h in half)
    assert half[0]["loss"] == pytest.approx(full[0]["loss"], abs=2e-2)
    assert half[0]["loss"] != full[0]["loss"]  # the forward pass did run in bf16


def test_base_model_is_loaded_with_the_configured_dtype_and_attention(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    cfg = fast_config(max_steps=1, dtype="bfloat16", attn_implementation="eager", loss={"name": "grm_sft"})
    model, history = train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path)
    assert model.attention_implementation() == "eager"
    assert {p.dtype for p in model.lm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.reward_head.parameters()} == {torch.float32}  # the head keeps full precision
    assert math.isfinite(history[-1]["loss"])
    default, _ = train_reward_model(path, tokenizer, pairs, None, fast_config(max_steps=1), tmp_path / "default")
    assert default.attention_implementation() == "sdpa"
    assert {p.dtype for p in default.lm.parameters()} == {torch.float32}  # as saved
