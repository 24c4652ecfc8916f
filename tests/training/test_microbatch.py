"""Micro-batches under a token budget: the split respects the budget, and the accumulated step equals the
one-batch step (gradients, weights, metrics); runs stay deterministic and resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from training_helpers import assert_same_weights, fast_config, state_of

from rewardlab.training import BatchPlan, TrainConfig, tokenize_pairs, train_reward_model
from rewardlab.training.data import PairExample
from rewardlab.training.launch import run_training
from rewardlab.training.loop import _Run
from rewardlab.training.microbatch import (chunk_for_inference, micro_batch_tokens, plan_micro_batches,
                                           split_by_token_budget)

# Float32 sums taken in another grouping differ in the last bits; measured differences are ~1e-8.
ATOL = 1e-5
# Pairwise losses give the reward head's bias an exactly-zero gradient (checked with the other gradients);
# AdamW turns the float rounding left in it into steps of about +-lr whose sign depends on the grouping.
# The bias shifts every reward equally, so the weight comparison leaves it out.
SHIFT_ONLY = {"reward_head.1.bias"}


def _example(n_chosen: int, n_rejected: int, index: int) -> PairExample:
    return PairExample(tuple(range(n_chosen)), (0,) * n_chosen, tuple(range(n_rejected)), (0,) * n_rejected,
                       float("nan"), index)


LENGTHS = [(10, 4), (3, 3), (25, 7), (6, 12), (8, 8), (2, 30), (5, 5), (9, 1)]
EXAMPLES = [_example(c, r, i) for i, (c, r) in enumerate(LENGTHS)]


@pytest.mark.parametrize("packing", [False, True])
@pytest.mark.parametrize("budget", [60, 100, 250, 10_000])
def test_split_respects_the_budget_and_keeps_every_pair_once(packing, budget):
    groups = split_by_token_budget(np.arange(len(EXAMPLES)), EXAMPLES, budget, packing)
    assert sorted(int(i) for g in groups for i in g) == list(range(len(EXAMPLES)))
    for group in groups:
        tokens = micro_batch_tokens([EXAMPLES[int(i)] for i in group], packing)
        assert tokens <= budget or len(group) == 1  # a pair larger than the budget goes alone
    if budget >= 10_000:
        assert len(groups) == 1


def test_padded_cost_counts_the_grid_and_packed_cost_the_tokens():
    pairs = [EXAMPLES[0], EXAMPLES[2]]  # lengths (10, 4) and (25, 7)
    assert micro_batch_tokens(pairs, packing=False) == 2 * 2 * 25
    assert micro_batch_tokens(pairs, packing=True) == 10 + 4 + 25 + 7


def test_oversized_pair_goes_alone_and_unsorted_split_keeps_the_order():
    groups = split_by_token_budget([0, 1, 5, 6], EXAMPLES, 40, packing=True, sort=False)
    assert [g.tolist() for g in groups] == [[0, 1], [5], [6]]
    chunks = chunk_for_inference([7, 6, 5, 4, 3], EXAMPLES, 2, max_tokens=None, packing=True)
    assert chunks == [[7, 6], [5, 4], [3]]
    chunks = chunk_for_inference([7, 6, 5, 4, 3], EXAMPLES, 4, max_tokens=45, packing=True)
    assert [i for c in chunks for i in c] == [7, 6, 5, 4, 3] and all(len(c) <= 4 for c in chunks)


def test_without_a_budget_the_batch_plan_split_is_kept():
    split = [np.array([3, 1]), np.array([0, 2])]
    assert plan_micro_batches(split, EXAMPLES, None, False) is split
    assert plan_micro_batches(split, EXAMPLES, 0, True) is split


def test_config_hash_is_unchanged_while_the_budget_is_unset():
    base = TrainConfig.from_dict({"learning_rate": 1e-4})
    payload = base.to_dict()
    assert payload["max_tokens_per_micro_batch"] is None
    assert base.config_hash() == TrainConfig.from_dict({"learning_rate": 1e-4,
                                                         "max_tokens_per_micro_batch": None}).config_hash()
    budgeted = TrainConfig.from_dict({"learning_rate": 1e-4, "max_tokens_per_micro_batch": "512"})
    assert budgeted.max_tokens_per_micro_batch == 512 and budgeted.config_hash() != base.config_hash()
    with pytest.raises(ValueError, match="max_tokens_per_micro_batch"):
        TrainConfig.from_dict({"max_tokens_per_micro_batch": -1})


def _run_capturing_gradients(path, tokenizer, pairs, eval_pairs, cfg, state_dir):
    """Train with `cfg`, recording every parameter's gradient right before each optimizer step."""
    run = _Run(path, tokenizer, pairs, eval_pairs, cfg, state_dir, None)
    captured = []
    step = run.optimizer.step

    def capture_then_step(*args, **kwargs):
        captured.append({name: p.grad.detach().clone() for name, p in run.model.named_parameters()
                         if p.grad is not None})
        return step(*args, **kwargs)

    run.optimizer.step = capture_then_step
    model, history = run.train()
    return model, history, captured, run


@pytest.mark.parametrize("loss, packing", [("bt", False), ("grm_sft", False), ("grm_dpo_noref", True),
                                           ("grm_dpo", False)])
def test_token_budget_step_equals_the_one_batch_step(tiny_base, pairs, tmp_path, loss, packing):
    path, tokenizer = tiny_base
    common = {"per_device_batch_size": 8, "max_steps": 2, "disable_dropout": True, "packing": packing,
              "loss": {"name": loss, "alpha": 0.3}, "reference": "precomputed"}
    examples = tokenize_pairs(pairs, tokenizer, 48)
    # Room for about three of the longest padded pairs, or two packed ones.
    budget = (2 if packing else 3) * max(micro_batch_tokens([e], packing) for e in examples)
    big_model, big_history, big_grads, _ = _run_capturing_gradients(
        path, tokenizer, pairs, pairs.iloc[:5], fast_config(**common), tmp_path / "big")
    small_model, small_history, small_grads, run = _run_capturing_gradients(
        path, tokenizer, pairs, pairs.iloc[:5], fast_config(max_tokens_per_micro_batch=budget, **common),
        tmp_path / "small")
    split = plan_micro_batches(run.plan.micro_batches(0), run.train_examples, budget, packing)
    assert len(split) >= 3 and len({len(g) for g in split}) > 1  # several micro-batches of unequal size

    assert len(big_grads) == len(small_grads) == 2
    for big, small in zip(big_grads, small_grads):
        assert big.keys() == small.keys()
        for name in big:
            torch.testing.assert_close(small[name], big[name], atol=ATOL, rtol=0, msg=name)
    for name, tensor in state_of(big_model).items():
        if name in SHIFT_ONLY:
            continue
        torch.testing.assert_close(state_of(small_model)[name], tensor, atol=ATOL, rtol=0, msg=name)
    for a, b in zip(big_history, small_history):
        assert a.keys() == b.keys()
        for key in a.keys() - {"reward_mean", "eval_reward_mean"}:  # these move with the bias (SHIFT_ONLY)
            assert b[key] == pytest.approx(a[key], abs=ATOL, rel=1e-4), key


def test_token_budget_runs_are_deterministic_and_resume_exactly(tiny_base, pairs, tmp_path):
    path, tokenizer = tiny_base
    # Dropout on: a resumed run must also restore the random streams.
    cfg = fast_config(per_device_batch_size=8, num_epochs=2, checkpoint_every=2, max_tokens_per_micro_batch=120,
                      loss={"name": "grm_sft"})
    whole, whole_history = train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path / "whole")
    again, again_history = train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path / "again")
    assert_same_weights(state_of(whole), state_of(again))
    assert whole_history == again_history

    class Crash(RuntimeError):
        pass

    def crash_at_three(metrics, step):
        if step == 3:
            raise Crash

    with pytest.raises(Crash):  # step 3 done but not saved; step 2 is the newest checkpoint
        train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path / "state", log_metrics=crash_at_three)
    resumed, resumed_history = train_reward_model(path, tokenizer, pairs, None, cfg, tmp_path / "state")
    assert_same_weights(state_of(whole), state_of(resumed))
    assert resumed_history == whole_history


@pytest.mark.slow
def test_two_processes_with_different_micro_batch_counts_match_one_process(tiny_base, pairs, tmp_path):
    """Under a budget the ranks may split their shares into different numbers of micro-batches; each still
    all-reduces once per step, and the step is the one-process, one-batch step."""
    path, tokenizer = tiny_base
    common = {"max_steps": 3, "disable_dropout": True, "loss": {"name": "grm_sft"}}
    examples = tokenize_pairs(pairs, tokenizer, 48)
    budget = 3 * max(micro_batch_tokens([e], False) for e in examples) // 2
    plan = BatchPlan(len(pairs), 4, num_processes=2, seed=fast_config().seed)
    counts = [[len(plan_micro_batches(plan.micro_batches(s, r), examples, budget, False)) for r in (0, 1)]
              for s in range(3)]
    assert any(a != b for a, b in counts), counts  # the uneven case is really exercised
    two_model, two = run_training(path, tokenizer, pairs, None, fast_config(
        per_device_batch_size=4, num_processes=2, max_tokens_per_micro_batch=budget, **common), tmp_path / "two")
    one_model, one = train_reward_model(path, tokenizer, pairs, None, fast_config(per_device_batch_size=8, **common),
                                        tmp_path / "one")
    for a, b in zip(one, two):
        for key in ("loss", "bt", "reg", "accuracy", "logps_chosen_mean", "grad_norm"):
            assert b[key] == pytest.approx(a[key], abs=ATOL, rel=1e-4), (a["step"], key)
    for name, tensor in one_model.state_dict().items():
        if name not in SHIFT_ONLY:
            torch.testing.assert_close(two_model.state_dict()[name], tensor, atol=ATOL, rtol=0, msg=name)
