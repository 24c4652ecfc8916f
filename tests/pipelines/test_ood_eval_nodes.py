"""ood_eval's hidden-state norm dispersion: the norms of the reward head's input over the in-distribution test set's
chosen and rejected responses, checked against the model's own hidden states computed one sequence at a time."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_tiny import save_tiny_base, tiny_pairs_df  # noqa: E402

from rewardlab.encoding import encode_pairs  # noqa: E402
from rewardlab.modeling import RewardModel  # noqa: E402
from rewardlab.pipelines.ood_eval.nodes import score_eval_sets, summarize_eval  # noqa: E402

MAX_LENGTH = 64


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory):
    base, tokenizer = save_tiny_base(tmp_path_factory.mktemp("base"))
    torch.manual_seed(5)
    model = RewardModel.from_base(base)
    # A freshly initialised final RMSNorm scales every hidden state to the same norm (sqrt(hidden size)); drawn
    # weights give the tokens different norms, as a trained model's have.
    with torch.no_grad():
        model.causal_lm().model.norm.weight.uniform_(0.2, 2.0)
    directory = tmp_path_factory.mktemp("rm") / "reward_model"
    model.save_pretrained(directory, tokenizer=tokenizer)
    return str(directory)


def _direct_last_hidden(model: RewardModel, ids: list[int]) -> torch.Tensor:
    """The causal LM's last-layer hidden state (after its final norm) at the last token of one unpadded sequence."""
    with torch.no_grad():
        out = model.causal_lm()(torch.tensor([ids]), output_hidden_states=True)
    return out.hidden_states[-1][0, -1]


def test_hidden_norm_dispersion_is_that_of_the_reward_heads_input(reward_model_dir):
    test = tiny_pairs_df(9)
    ood_both = tiny_pairs_df(6).assign(subset=["a", "b"] * 3)
    responses = pd.DataFrame({"prompt": test["prompt"], "response": test["chosen"], "gold": np.arange(9.0),
                              "eval_set": "test"})
    params = {"batch_size": 4, "max_length": MAX_LENGTH, "bootstrap_samples": 20}
    scores, response_scores = score_eval_sets(reward_model_dir, test, tiny_pairs_df(5), tiny_pairs_df(4), ood_both,
                                              responses, {}, params)
    metrics, mlflow_metrics, by_run = summarize_eval(scores, response_scores, {"ood_eval": params})

    model = RewardModel.from_pretrained(reward_model_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(reward_model_dir)
    encoded = encode_pairs(tokenizer, test["prompt"], test["chosen"], test["rejected"], MAX_LENGTH)
    hidden = torch.stack([_direct_last_hidden(model, ids) for pair in encoded
                          for ids in (pair.chosen_ids, pair.rejected_ids)])
    # The representation is the one the reward head reads: the head on it gives the scored rewards.
    with torch.no_grad():
        head_rewards = model.reward_head(hidden).squeeze(-1).numpy()
    test_scores = scores[scores["eval_set"] == "test"]
    scored_rewards = np.column_stack([test_scores["reward_chosen"], test_scores["reward_rejected"]]).ravel()
    np.testing.assert_allclose(head_rewards, scored_rewards, rtol=1e-4, atol=1e-5)

    norms = hidden.norm(dim=-1).double().numpy()
    expected = {"hidden_norm_mean": norms.mean(), "hidden_norm_std": norms.std(),
                "hidden_norm_cv": norms.std() / norms.mean()}
    assert expected["hidden_norm_cv"] > 0.05  # the norms differ: the check below can tell sets apart

    overall = metrics[metrics["subset"] == "all"].set_index("eval_set")
    for column, value in expected.items():
        assert overall.loc["test", column] == pytest.approx(value, rel=1e-4)
        assert mlflow_metrics[f"test.{column}"]["value"] == pytest.approx(value, rel=1e-4)
    # Every set has its own values, written to the run's result file; a subset's row gets none.
    assert overall.loc["ood_prompt", "hidden_norm_mean"] != pytest.approx(expected["hidden_norm_mean"], rel=1e-4)
    assert overall[["hidden_norm_mean", "hidden_norm_std", "hidden_norm_cv"]].notna().all().all()
    subset_rows = metrics[(metrics["eval_set"] == "ood_both") & (metrics["subset"] != "all")]
    assert list(subset_rows["subset"]) == ["a", "b"] and subset_rows["hidden_norm_cv"].isna().all()
    (run_results,) = by_run.values()
    assert run_results.set_index(["eval_set", "subset"]).loc[("test", "all"), "hidden_norm_cv"] == pytest.approx(
        expected["hidden_norm_cv"], rel=1e-4)
