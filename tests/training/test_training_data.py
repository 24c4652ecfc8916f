import numpy as np
import pandas as pd
import pytest
import torch

from rewardlab.encoding import Truncation, encode_prompt_response
from rewardlab.modeling import RewardModel
from rewardlab.schema import DataValidationError
from rewardlab.training import BatchPlan, collate_packed, collate_padded, tokenize_pairs
from rewardlab.training.data import collate, model_inputs, truncation_counts


def test_tokenize_pairs_matches_scoring_tokenization(tiny_base, pairs):
    _, tokenizer = tiny_base
    conversational = pd.DataFrame([{
        "id": "c0", "prompt": [{"role": "user", "content": "How do I bake bread?"}],
        "chosen": [{"role": "assistant", "content": "Mix flour and water."}],
        "rejected": [{"role": "assistant", "content": "No."}], "margin": 2.0, "source": "chat",
    }])
    frame = pd.concat([pairs, conversational], ignore_index=True)
    examples = tokenize_pairs(frame, tokenizer, max_length=40)
    assert [e.index for e in examples] == list(range(len(frame)))
    assert 0 < sum(e.truncation.any for e in examples) < len(examples)
    for example, row in zip(examples, frame.itertuples()):
        for side in ("chosen", "rejected"):
            expected = encode_prompt_response(tokenizer, row.prompt, getattr(row, side), 40)
            assert len(getattr(example, f"{side}_ids")) <= 40
            if not example.truncation.any:  # uncut, each side has the layout of a lone response
                assert (getattr(example, f"{side}_ids"), getattr(example, f"{side}_response_mask")) == \
                    (tuple(expected[0]), tuple(expected[1]))
    assert np.isnan(examples[0].margin) and examples[-1].margin == 2.0


def test_tokenize_pairs_names_the_row_and_field_of_unreadable_data(tiny_base, pairs):
    records = pairs.iloc[:3].to_dict("records")
    records[1]["rejected"] = [{"role": "assistant", "content": "No."}]
    frame = pd.DataFrame(records)
    with pytest.raises(DataValidationError, match=r"x\.parquet: row 1, field 'rejected': .*both be text"):
        tokenize_pairs(frame, tiny_base[1], 32, file="x.parquet")


def test_truncation_counts():
    def example(prompt: bool, response: bool) -> object:
        return type("Example", (), {"truncation": Truncation(prompt, response)})()

    examples = [example(False, False), example(True, False), example(True, True), example(False, True)]
    assert truncation_counts(examples, "eval_data.") == {
        "eval_data.pairs": 4, "eval_data.truncated_pairs": 3, "eval_data.truncated_prompt_pairs": 2,
        "eval_data.truncated_response_pairs": 2}


def test_tokenize_pairs_names_missing_columns(tiny_base, pairs):
    with pytest.raises(ValueError, match="rejected"):
        tokenize_pairs(pairs.drop(columns=["rejected"]), tiny_base[1], 32, file="x.parquet")


def test_padded_collation_puts_chosen_first_and_pads_right(tiny_base, pairs):
    examples = tokenize_pairs(pairs.iloc[:3], tiny_base[1], max_length=48)
    batch = collate_padded(examples, pad_token_id=0)
    sequences = [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
    masks = [e.chosen_response_mask for e in examples] + [e.rejected_response_mask for e in examples]
    width = max(map(len, sequences))
    assert batch["input_ids"].shape == batch["attention_mask"].shape == batch["response_mask"].shape == (6, width)
    for row, (ids, mask) in enumerate(zip(sequences, masks)):
        n = len(ids)
        assert batch["input_ids"][row, :n].tolist() == list(ids)
        assert batch["attention_mask"][row].tolist() == [1] * n + [0] * (width - n)
        assert batch["response_mask"][row].tolist() == list(mask) + [0] * (width - n)
    assert batch["indices"].tolist() == [0, 1, 2]


def test_packed_collation_layout(tiny_base, pairs):
    examples = tokenize_pairs(pairs.iloc[:3], tiny_base[1], max_length=48)
    batch = collate_packed(examples)
    sequences = [e.chosen_ids for e in examples] + [e.rejected_ids for e in examples]
    total = sum(map(len, sequences))
    assert batch["input_ids"].shape == batch["position_ids"].shape == batch["sequence_ids"].shape == (1, total)
    assert batch["input_ids"][0].tolist() == [t for s in sequences for t in s]
    assert batch["position_ids"][0].tolist() == [p for s in sequences for p in range(len(s))]
    assert batch["sequence_ids"][0].tolist() == [i for i, s in enumerate(sequences) for _ in s]
    assert batch["last_token_index"].tolist() == list(np.cumsum([len(s) for s in sequences]) - 1)
    assert "attention_mask" not in batch


def test_packed_and_padded_batches_give_the_same_rewards_and_logps(tiny_base, pairs):
    path, tokenizer = tiny_base
    torch.manual_seed(0)
    model = RewardModel.from_base(path).eval()
    examples = tokenize_pairs(pairs.iloc[:5], tokenizer, max_length=48)
    with torch.no_grad():
        padded = model(**model_inputs(collate_padded(examples, tokenizer.pad_token_id)), compute_logps=True)
        packed = model(**model_inputs(collate_packed(examples)), compute_logps=True)
    torch.testing.assert_close(packed.rewards, padded.rewards, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(packed.response_logps, padded.response_logps, atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(packed.last_hidden, padded.last_hidden, atol=1e-5, rtol=1e-5)
    assert bool((padded.response_logps < 0).all())


def test_batch_plan_visits_every_pair_once_per_epoch_in_a_seeded_order():
    plan = BatchPlan(num_examples=22, per_device_batch_size=2, num_processes=1, gradient_accumulation_steps=2,
                     seed=3)
    assert (plan.global_batch_size, plan.steps_per_epoch) == (4, 5)
    epoch0 = np.concatenate([plan.global_batch(s) for s in range(5)])
    epoch1 = np.concatenate([plan.global_batch(s) for s in range(5, 10)])
    assert len(set(epoch0)) == 20 and len(set(epoch1)) == 20  # 2 pairs dropped per epoch, not the same ones
    assert not np.array_equal(epoch0, epoch1)
    again = BatchPlan(22, 2, 1, 2, seed=3)
    assert all(np.array_equal(plan.global_batch(s), again.global_batch(s)) for s in range(10))
    assert not np.array_equal(BatchPlan(22, 2, 1, 2, seed=4).global_batch(0), plan.global_batch(0))
    assert plan.total_steps(num_epochs=3) == 15 and plan.total_steps(num_epochs=3, max_steps=7) == 7


def test_ranks_take_contiguous_shards_of_the_same_global_batch():
    one = BatchPlan(num_examples=40, per_device_batch_size=4, num_processes=1, gradient_accumulation_steps=2, seed=0)
    two = BatchPlan(num_examples=40, per_device_batch_size=2, num_processes=2, gradient_accumulation_steps=2, seed=0)
    for step in range(one.total_steps(num_epochs=2)):
        assert np.array_equal(one.global_batch(step), two.global_batch(step))
        for micro in range(2):
            joined = np.concatenate([two.micro_batches(step, rank)[micro] for rank in range(2)])
            assert np.array_equal(joined, one.micro_batches(step, 0)[micro])


def test_batch_plan_refuses_data_smaller_than_a_batch():
    with pytest.raises(ValueError, match="global batch"):
        BatchPlan(num_examples=3, per_device_batch_size=2, num_processes=2)


def _lm_head_rows(model: RewardModel) -> list[int]:
    """Rows of hidden states the LM head receives, call by call."""
    rows: list[int] = []
    model.causal_lm().get_output_embeddings().register_forward_hook(
        lambda module, inputs, output: rows.append(inputs[0].reshape(-1, inputs[0].shape[-1]).shape[0]))
    return rows


@pytest.mark.parametrize("packing", [False, True], ids=["padded", "packed"])
def test_without_rejected_responses_scores_chosen_only_and_keeps_the_sft_gradient(tiny_base, pairs, packing):
    from rewardlab.losses import LossConfig, compute_loss
    from rewardlab.training.data import without_rejected_responses

    path, tokenizer = tiny_base
    examples = tokenize_pairs(pairs.iloc[:5], tokenizer, max_length=48)
    batch = collate(examples, packing, pad_token_id=tokenizer.pad_token_id or 0)
    trimmed = without_rejected_responses(batch)
    n = len(examples)
    chosen_tokens = sum(sum(e.chosen_response_mask[1:]) for e in examples)
    assert chosen_tokens > 0 and any(sum(e.rejected_response_mask[1:]) for e in examples)
    cfg = LossConfig(name="grm_sft", alpha=0.5)

    def step(inputs):
        torch.manual_seed(0)
        model = RewardModel.from_base(path).eval()  # eval: no dropout, the same function both times
        rows = _lm_head_rows(model)
        out = model(**model_inputs(inputs), compute_logps=True)
        forward_rows = sum(rows)  # backward recomputes each chunk's logits once more
        parts = compute_loss(cfg, out.rewards[:n], out.rewards[n:], out.response_logps[:n])
        parts["loss"].backward()
        grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
        return out, forward_rows, grads

    full, full_rows, full_grads = step(batch)
    only, only_rows, only_grads = step(trimmed)
    assert only_rows == chosen_tokens < full_rows
    assert torch.equal(only.rewards, full.rewards)
    torch.testing.assert_close(only.response_logps[:n], full.response_logps[:n], rtol=0, atol=1e-5)
    assert torch.all(only.response_logps[n:] == 0)
    assert only_grads.keys() == full_grads.keys()
    for name in full_grads:
        torch.testing.assert_close(only_grads[name], full_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    assert torch.equal(batch["response_mask"], collate(examples, packing, tokenizer.pad_token_id or 0)["response_mask"])
