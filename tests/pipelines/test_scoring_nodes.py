"""The scoring nodes of ood_eval and bon: the load options and the packed layout reach the model, packed
scoring gives the padded scores, and benchmark sets (RewardBench 2, RM-Bench) are scored per response and
summarized by their own rules."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_tiny import TINY_TEXTS, save_tiny_base, tiny_pairs_df  # noqa: E402

from rewardlab.evalsets import (  # noqa: E402
    REWARD_BENCH_2_SECTIONS,
    reward_bench_2_scores,
    reward_bench_2_to_responses,
    rm_bench_scores,
    rm_bench_to_responses,
)
from rewardlab.metrics import length_spearman, response_length  # noqa: E402
from rewardlab.modeling import RewardModel  # noqa: E402
from rewardlab.pipelines.bon.nodes import score_samples  # noqa: E402
from rewardlab.pipelines.ood_eval.nodes import compare_runs, score_eval_sets, summarize_eval  # noqa: E402
from rewardlab.scoring import score_responses  # noqa: E402

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


def _text(k: int, n: int = 40) -> str:
    return TINY_TEXTS[k % len(TINY_TEXTS)][: 10 + (7 * k) % n]


def _reward_bench_2_set() -> pd.DataFrame:
    """Hub-shaped RewardBench 2 rows: one best-of-4 row per section, and a Ties ref/tied twin."""
    rows = [{"id": str(i), "prompt": f"Human: {_text(i)}", "chosen": [_text(i + 1)],
             "rejected": [_text(i + 2), _text(i + 3), _text(i + 4)], "subset": section}
            for i, section in enumerate(REWARD_BENCH_2_SECTIONS[:-1])]
    rows += [{"id": "ref:0", "prompt": "Name a colour.", "chosen": [" red"], "rejected": [" bread", " Paris"],
              "subset": "Ties"},
             {"id": "tied:0", "prompt": "Name a colour.", "chosen": [" red", " blue"], "rejected": [" bread"],
              "subset": "Ties"}]
    return reward_bench_2_to_responses(rows)


def _rm_bench_set() -> pd.DataFrame:
    rows = [{"id": i, "prompt": _text(i), "chosen": [_text(i + 1, 20), _text(i + 2), "**" + _text(i + 2) + "**"],
             "rejected": [_text(i + 3, 20), _text(i + 4), "**" + _text(i + 4) + "**"], "domain": domain}
            for i, domain in enumerate(["chat", "safety-refuse", "code"])]
    return rm_bench_to_responses(rows)


def test_benchmark_sets_are_scored_per_response_and_summarized_end_to_end(reward_model_dir, tmp_path):
    sets = [tiny_pairs_df(5), tiny_pairs_df(4), tiny_pairs_df(3), tiny_pairs_df(3)]
    responses = _responses(sets[0]).assign(eval_set="test")
    extra = {"rb2": _reward_bench_2_set(), "rmb": _rm_bench_set()}
    params = {"batch_size": 4, "max_length": 64, "bootstrap_samples": 50}
    scores, response_scores = score_eval_sets(reward_model_dir, *sets, responses, extra, params)

    # The world's pair sets: one row per pair, as before, now with the responses' lengths in characters.
    pairs = scores[scores["benchmark"].isna()]
    assert len(pairs) == 15 and pairs["reward_chosen"].notna().all()
    assert pairs["length_chosen"].head(5).tolist() == [response_length(r) for r in sets[0]["chosen"]]
    # A benchmark set: every response scored once, as score_responses scores it.
    for name, frame in extra.items():
        part = scores[scores["eval_set"] == name]
        assert part["id"].tolist() == frame["id"].tolist() and part["reward_chosen"].isna().all()
    model, tokenizer = RewardModel.from_pretrained(reward_model_dir), AutoTokenizer.from_pretrained(reward_model_dir)
    rb2 = scores[scores["eval_set"] == "rb2"]
    expected = score_responses(model, tokenizer, extra["rb2"]["prompt"], extra["rb2"]["response"], batch_size=4,
                               max_length=64, progress=False)
    np.testing.assert_allclose(rb2["reward"], expected, atol=1e-5, rtol=1e-5)

    # Through the catalog's Parquet file, as summarize_eval reads it in a run.
    scores.to_parquet(tmp_path / "ood_scores.parquet")
    scores = pd.read_parquet(tmp_path / "ood_scores.parquet")
    metrics, mlflow_metrics, by_run = summarize_eval(scores, response_scores, {"ood_eval": params})

    rb2_rows = metrics[metrics["eval_set"] == "rb2"].set_index("subset")
    assert list(rb2_rows.index) == ["all", *REWARD_BENCH_2_SECTIONS]
    assert rb2_rows["benchmark"].eq("reward_bench_2").all()
    by_hand = reward_bench_2_scores(extra["rb2"].assign(reward=rb2["reward"].to_numpy()))
    for section in REWARD_BENCH_2_SECTIONS:
        assert rb2_rows.loc[section, "accuracy"] == pytest.approx(by_hand[section])
    assert rb2_rows.loc["all", "accuracy"] == pytest.approx(np.mean([by_hand[s] for s in REWARD_BENCH_2_SECTIONS]))
    assert rb2_rows.loc["all", "n"] == 7 and rb2_rows.loc["Ties", "n"] == 2

    rmb = scores[scores["eval_set"] == "rmb"]
    rmb_rows = metrics[metrics["eval_set"] == "rmb"].set_index("subset")
    assert list(rmb_rows.index) == ["all", "easy", "normal", "hard", "chat", "code", "safety"]
    by_hand = rm_bench_scores(extra["rmb"].assign(reward=rmb["reward"].to_numpy()))
    for part in ("easy", "normal", "hard", "chat", "code", "safety"):
        assert rmb_rows.loc[part, "accuracy"] == pytest.approx(by_hand[part])
    assert rmb_rows.loc["all", "accuracy"] == pytest.approx(by_hand["score"])

    # Length bias beside accuracy and ECE, for every set.
    test_pairs = scores[scores["eval_set"] == "test"]
    expected_rho = length_spearman(np.concatenate([test_pairs["reward_chosen"], test_pairs["reward_rejected"]]),
                                   np.concatenate([test_pairs["length_chosen"], test_pairs["length_rejected"]]))
    overall = metrics[metrics["subset"] == "all"].set_index("eval_set")
    assert overall.loc["test", "length_spearman"] == pytest.approx(expected_rho)
    assert overall.loc["rb2", "length_spearman"] == pytest.approx(length_spearman(rb2["reward"], rb2["length"]))
    assert overall["benchmark"].isna().sum() == 4

    # MLflow: every set's overall metrics, and each benchmark's score and parts.
    for key in ("test.length_spearman", "rb2.accuracy", "rb2.ece", "rb2.length_spearman", "rb2.score",
                "rb2.Precise_IF.score", "rb2.Ties.score", "rmb.score", "rmb.hard.score", "rmb.chat.score"):
        assert key in mlflow_metrics, key
    assert mlflow_metrics["rb2.score"]["value"] == pytest.approx(rb2_rows.loc["all", "accuracy"])
    assert mlflow_metrics["rmb.easy.score"]["value"] == pytest.approx(by_hand["easy"])

    # The comparison report: one column per set, then one per benchmark part; a second plot panel for them.
    markdown, figure = compare_runs({label: (lambda m=m: m) for label, m in by_run.items()})
    header, parts_header = [line for line in markdown.splitlines() if line.startswith("| variant")]
    assert header.endswith("| test | ood_prompt | ood_response | ood_both | rb2 | rmb |")
    assert "| rb2/Factuality |" in parts_header and "| rmb/hard |" in parts_header and "rb2/all" not in markdown
    assert len(figure.axes) == 2
