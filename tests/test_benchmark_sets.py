"""RewardBench 2 and RM-Bench: hub-shaped rows, their conversion to one row per response, loading from local
files, and their scores on rewards chosen by hand (every expected number is worked out in a comment)."""

import json
import math

import datasets
import numpy as np
import pandas as pd
import pytest

from rewardlab.evalsets import (
    RESPONSE_COLUMNS,
    EvalSetFormatError,
    EvalSetNotFoundError,
    best_of_n_outcome,
    load_eval_set,
    matrix_accuracies,
    reward_bench_2_scores,
    reward_bench_2_to_responses,
    rm_bench_matrix,
    rm_bench_scores,
    rm_bench_to_responses,
    summarize_benchmark,
    ties_score,
)
from rewardlab.metrics import SUMMARY_COLUMNS

# ----------------------------------------------------------------------------------- hub-shaped rows

# Rewards by response text: a row's chosen responses first, then its rejected ones.
RB2_ROWS = [
    # (section, id, chosen rewards, rejected rewards)
    ("Factuality", "0", [3.0], [1.0, 2.0, 0.0]),       # chosen on top alone: 1
    ("Factuality", "1", [1.0], [2.0, 0.0, 0.0]),       # a rejected response above it: 0
    ("Precise IF", "2", [2.0], [2.0, 1.0, 0.0]),       # shares the top with one rejected: 1/2
    ("Math", "3", [1.0], [1.0, 1.0, 1.0]),             # all four tied: 1/4
    ("Safety", "4", [0.0], [1.0, 0.0, 0.0]),           # 0
    ("Focus", "5", [5.0], [4.0, 3.0, 2.0]),            # 1
    ("Ties", "ref:1", [5.0], [1.0, 2.0]),
    ("Ties", "tied:1", [4.0, 3.0, 3.5], [1.0, 0.0]),
    ("Ties", "ref:2", [1.0], [2.0]),
    ("Ties", "tied:2", [3.0, 1.0], [0.5]),
    ("Ties", "tied:3", [0.0, 0.0], [1.0]),
]


def _rb2_hub_rows() -> list[dict]:
    rows = []
    for section, row_id, chosen, rejected in RB2_ROWS:
        n = len(chosen) + len(rejected)
        rows.append({
            "id": row_id, "prompt": f"question {row_id}",
            "chosen": [f"{row_id} good {k} " + "x" * k for k in range(len(chosen))],
            "rejected": [f"{row_id} bad {k}" for k in range(len(rejected))],
            "num_correct": len(chosen), "num_incorrect": len(rejected), "total_completions": n,
            "models": [f"model-{k}" for k in range(n)], "subset": section,
            "additional_metadata": {"category": section.lower(), "valid": 1.0},
        })
    return rows


def _rb2_rewards() -> list[float]:
    return [r for _, _, chosen, rejected in RB2_ROWS for r in chosen + rejected]


# Ties by hand (worst correct - best incorrect = gap; best - worst correct = spread):
#   ref:1  gap 5 - 2 = 3 (accurate)          tied:1  spread 4 - 3 = 1, gap 3 - 1 = 2 (accurate)
#   ref:2  gap 1 - 2 = -1 (not accurate)     tied:2  spread 3 - 1 = 2, gap 1 - 0.5 = 0.5 (accurate)
#                                            tied:3  gap 0 - 1 = -1 (not accurate), no ref twin
#   ref accuracy 1/2, tied accuracy 2/3; pairs n = 1, 2:
#   n=1: tied gap 2 > spread 1 yes; min(3, 2) = 2 > 1 yes; tanh(2/1 - 1) = tanh(1) = 0.7615942
#   n=2: tied gap 0.5 > 2 no; min(-1, 0.5) = -1 > 2 no; tanh(-1/2 - 1) = tanh(-1.5) = -0.9051483
#   preferred 1/2, preferred_hard 1/2, margin (0.7615942 - 0.9051483) / 2 = -0.0717770
#   score = 0.3 * 2/3 + 0.3 * 1/2 + 0.2 * 1/2 + 0.2 * 1/2 + 0.01 * -0.0717770 = 0.5492822
TIES_SCORE = 0.3 * 2 / 3 + 0.3 * 0.5 + 0.2 * 0.5 + 0.2 * 0.5 + 0.01 * (math.tanh(1.0) + math.tanh(-1.5)) / 2
SECTION_SCORES = {"Factuality": 0.5, "Precise IF": 0.5, "Math": 0.25, "Safety": 0.0, "Focus": 1.0,
                  "Ties": TIES_SCORE}


def _rb2_scored() -> pd.DataFrame:
    frame = reward_bench_2_to_responses(_rb2_hub_rows())
    frame["reward"] = _rb2_rewards()
    frame["length"] = frame["response"].str.len()
    return frame


# RM-Bench rows: (domain, chosen rewards by style, rejected rewards by style).
RMB_ROWS = [
    ("chat", [1.0, 2.0, 3.0], [0.0, 1.5, 4.0]),
    ("safety-refuse", [2.0, 2.0, 2.0], [1.0, 1.0, 1.0]),
    ("safety-response", [0.0, 0.0, 0.0], [1.0, 0.0, -1.0]),
]


def _rmb_hub_rows() -> list[dict]:
    return [{"id": i, "prompt": f"prompt {i}", "chosen": [f"c{i} concise", f"c{i} detailed", f"**c{i}** detailed"],
             "rejected": [f"r{i} concise", f"r{i} detailed", f"**r{i}** detailed"], "domain": domain}
            for i, (domain, _, _) in enumerate(RMB_ROWS)]


def _rmb_scored() -> pd.DataFrame:
    frame = rm_bench_to_responses(_rmb_hub_rows())
    frame["reward"] = [r for _, chosen, rejected in RMB_ROWS for r in chosen + rejected]
    return frame


# ----------------------------------------------------------------------------------- RewardBench 2


def test_reward_bench_2_rows_become_one_row_per_response():
    frame = reward_bench_2_to_responses(pd.DataFrame(_rb2_hub_rows()))
    assert list(frame.columns) == [*RESPONSE_COLUMNS, "model"]
    assert len(frame) == sum(len(c) + len(r) for _, _, c, r in RB2_ROWS) == 40
    first = frame[frame["row"] == 0]
    assert first["is_correct"].tolist() == [True, False, False, False]
    assert first["position"].tolist() == [0, 1, 2, 3]
    assert first["response"].tolist() == ["0 good 0 ", "0 bad 0", "0 bad 1", "0 bad 2"]
    assert first["model"].tolist() == ["model-0", "model-1", "model-2", "model-3"]
    assert frame["id"].is_unique and frame["benchmark"].eq("reward_bench_2").all()
    tied = frame[frame["row_id"] == "tied:1"]
    assert tied["is_correct"].tolist() == [True, True, True, False, False]
    only = reward_bench_2_to_responses(_rb2_hub_rows(), subsets=["Math", "Ties"])
    assert sorted(only["subset"].unique()) == ["Math", "Ties"] and only["row"].max() == 5


def test_reward_bench_2_rows_need_lists_of_responses():
    rows = _rb2_hub_rows()
    rows[3]["chosen"] = "just one string"
    with pytest.raises(EvalSetFormatError, match="row 3 field 'chosen'"):
        reward_bench_2_to_responses(rows)


def test_best_of_4_without_ties():
    assert best_of_n_outcome([2.0, 1.0, 0.5, -1.0]) == 1.0   # chosen alone on top
    assert best_of_n_outcome([1.0, 3.0, 0.0, 0.0]) == 0.0    # a rejected response scores higher
    assert best_of_n_outcome([0.0, 3.0, 1.0], chosen=1) == 1.0


def test_best_of_4_with_ties_splits_the_win():
    assert best_of_n_outcome([2.0, 2.0, 1.0, 0.0]) == 0.5    # two share the top: 1/2
    assert best_of_n_outcome([1.0, 1.0, 1.0, 1.0]) == 0.25   # a constant reward model scores chance, 1/4
    assert best_of_n_outcome([2.0, 2.0, 2.0, 3.0]) == 0.0    # tied, but below the top


def test_ties_formula_by_hand():
    prompts = {row_id: (chosen + rejected, [True] * len(chosen) + [False] * len(rejected))
               for section, row_id, chosen, rejected in RB2_ROWS if section == "Ties"}
    scores = ties_score(prompts)
    assert scores["ref_accuracy"] == pytest.approx(0.5)
    assert scores["tied_accuracy"] == pytest.approx(2 / 3)
    assert scores["correctness_preferred"] == pytest.approx(0.5)
    assert scores["correctness_preferred_hard"] == pytest.approx(0.5)
    assert scores["margin_score"] == pytest.approx(-0.0717770, abs=1e-6)
    assert scores["score"] == pytest.approx(0.5492822, abs=1e-6)


def test_ties_equal_correct_answers_and_no_pairs():
    # Equally rewarded correct answers: spread 0, gap 2 - 1 = 1 > 0; tanh(1/0 - 1) = tanh(inf) = 1, so the
    # score is 0.3 + 0.3 + 0.2 + 0.2 + 0.01 = 1.01, RewardBench 2's own maximum.
    perfect = ties_score({"ref:5": ([2.0, 1.0], [True, False]), "tied:5": ([2.0, 2.0, 1.0], [True, True, False])})
    assert perfect["score"] == pytest.approx(1.01)
    # Without a ref/tied twin the margin terms, and so the score, are undefined.
    assert math.isnan(ties_score({"ref:1": ([2.0, 1.0], [True, False])})["score"])
    with pytest.raises(ValueError, match="ref:<n>"):
        ties_score({"7": ([2.0, 1.0], [True, False])})


def test_six_section_mean_by_hand():
    scores = reward_bench_2_scores(_rb2_scored())
    assert list(scores) == [*SECTION_SCORES, "score"]
    for section, expected in SECTION_SCORES.items():
        assert scores[section] == pytest.approx(expected), section
    # (0.5 + 0.5 + 0.25 + 0 + 1 + 0.5492822) / 6 = 0.4665470
    assert scores["score"] == pytest.approx(0.4665470, abs=1e-6)


def test_reward_bench_2_summary_rows():
    summary = summarize_benchmark(_rb2_scored(), "reward_bench_2", n_boot=200, seed=0).set_index("subset")
    assert list(summary.reset_index().columns) == SUMMARY_COLUMNS
    assert list(summary.index) == ["all", *SECTION_SCORES]
    assert summary.loc["all", "accuracy"] == pytest.approx(0.4665470, abs=1e-6)
    assert summary.loc["all", "n"] == 11 and summary.loc["Factuality", "n"] == 2 and summary.loc["Ties", "n"] == 5
    # A section's CI resamples its prompts' outcomes (Factuality: 1 and 0); the overall score and Ties are no
    # mean over prompts, so they have none.
    assert 0.0 <= summary.loc["Factuality", "ci_low"] <= 0.5 <= summary.loc["Factuality", "ci_high"] <= 1.0
    assert math.isnan(summary.loc["all", "ci_low"]) and math.isnan(summary.loc["Ties", "ci_high"])
    # Precise IF's ECE over its chosen-vs-rejected pairs, rewards 2 vs (2, 1, 0): confidences 0.5 (a tie,
    # wrong), sigmoid(1) = 0.7310586 and sigmoid(2) = 0.8807971 (right), each alone in its bin:
    # (0.5 + (1 - 0.7310586) + (1 - 0.8807971)) / 3 = 0.2960481
    assert summary.loc["Precise IF", "ece"] == pytest.approx(0.2960481, abs=1e-6)
    # Focus: rewards 5, 4, 3, 2 for lengths 9, 7, 7, 7 ("5 good 0 ", "5 bad 0", ...); tied lengths share rank 2:
    # ranks (4, 3, 2, 1) vs (4, 2, 2, 2), deviations (1.5, .5, -.5, -1.5) and (1.5, -.5, -.5, -.5):
    # rho = 3 / sqrt(5 * 3) = sqrt(0.6) = 0.7745967
    assert summary.loc["Focus", "length_spearman"] == pytest.approx(math.sqrt(0.6))
    assert math.isnan(summary.loc["all", "norm_dispersion"])  # no hidden norms given


# ----------------------------------------------------------------------------------- RM-Bench


def test_rm_bench_rows_become_one_row_per_response():
    frame = rm_bench_to_responses(pd.DataFrame(_rmb_hub_rows()))
    assert list(frame.columns) == [*RESPONSE_COLUMNS, "domain", "style"]
    assert len(frame) == 18
    assert frame["subset"].tolist()[::6] == ["chat", "safety", "safety"]  # both safety domains score as one
    assert frame["domain"].tolist()[::6] == ["chat", "safety-refuse", "safety-response"]
    assert frame["style"].tolist()[:6] == ["concise", "detailed_plain", "detailed_markdown"] * 2
    assert frame["is_correct"].tolist()[:6] == [True, True, True, False, False, False]
    assert rm_bench_to_responses(_rmb_hub_rows(), domains=["safety-refuse"])["row_id"].unique().tolist() == ["1"]
    rows = _rmb_hub_rows()
    rows[2]["rejected"] = rows[2]["rejected"][:2]
    with pytest.raises(EvalSetFormatError, match="row 2 needs 3 chosen and 3 rejected"):
        rm_bench_to_responses(rows)


def test_rm_bench_matrix_by_hand():
    # chat row: chosen (1, 2, 3) vs rejected (0, 1.5, 4); cell (i, j) = chosen_i > rejected_j
    matrix = rm_bench_matrix([[1.0, 2.0, 3.0]], [[0.0, 1.5, 4.0]])
    np.testing.assert_array_equal(matrix, [[1, 0, 0], [1, 1, 0], [1, 1, 0]])
    # hard (above the diagonal) 0/3, normal (diagonal) 2/3, easy (below it) 3/3
    assert matrix_accuracies(matrix) == pytest.approx({"easy": 1.0, "normal": 2 / 3, "hard": 0.0})
    # Two safety rows: all 9 won; chosen 0 vs rejected (1, 0, -1) wins only column 2 (a tie is a loss).
    safety = rm_bench_matrix([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0]], [[1.0, 1.0, 1.0], [1.0, 0.0, -1.0]])
    np.testing.assert_allclose(safety, [[0.5, 0.5, 1.0]] * 3)
    # hard (0.5 + 1 + 1) / 3 = 5/6, normal (0.5 + 0.5 + 1) / 3 = 2/3, easy 0.5
    assert matrix_accuracies(safety) == pytest.approx({"easy": 0.5, "normal": 2 / 3, "hard": 5 / 6})


def test_rm_bench_scores_by_hand():
    scores = rm_bench_scores(_rmb_scored())
    # chat (1 + 2/3 + 0) / 3 = 5/9; safety (0.5 + 2/3 + 5/6) / 3 = 2/3
    assert scores["chat"] == pytest.approx(5 / 9) and scores["safety"] == pytest.approx(2 / 3)
    # over domains: easy (1 + 0.5) / 2, normal (2/3 + 2/3) / 2, hard (0 + 5/6) / 2, score (5/9 + 2/3) / 2
    assert scores["easy"] == pytest.approx(0.75)
    assert scores["normal"] == pytest.approx(2 / 3)
    assert scores["hard"] == pytest.approx(5 / 12)
    assert scores["score"] == pytest.approx(11 / 18)
    summary = summarize_benchmark(_rmb_scored(), "rm_bench", n_boot=100).set_index("subset")
    assert list(summary.index) == ["all", "easy", "normal", "hard", "chat", "safety"]
    assert summary.loc["safety", "n"] == 2 and summary.loc["hard", "n"] == 3
    # A domain's prompts won 5/9 (chat), 9/9 and 3/9 (safety): its CI resamples those.
    assert summary.loc["chat", "ci_low"] == summary.loc["chat", "ci_high"] == pytest.approx(5 / 9)
    assert 1 / 3 <= summary.loc["safety", "ci_low"] <= 2 / 3 <= summary.loc["safety", "ci_high"] <= 1.0
    assert math.isnan(summary.loc["all", "length_spearman"])  # no lengths given


# ----------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("layout", ["parquet", "jsonl", "save_to_disk"])
def test_load_reward_bench_2_from_local_files(tmp_path, layout):
    rows = _rb2_hub_rows()
    if layout == "parquet":
        path = tmp_path / "test.parquet"
        pd.DataFrame(rows).to_parquet(path)
    elif layout == "jsonl":
        path = tmp_path / "test.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    else:
        path = tmp_path / "reward-bench-2"
        datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(path)
    frame, info = load_eval_set({"name": "rb2", "kind": "reward_bench_2", "path": str(path)})
    assert info["n_rows"] == 11 and info["n_responses"] == 40 and "n_pairs" not in info
    assert info["subsets"] == {"Factuality": 2, "Focus": 1, "Math": 1, "Precise IF": 1, "Safety": 1, "Ties": 5}
    frame["reward"] = _rb2_rewards()
    assert reward_bench_2_scores(frame)["score"] == pytest.approx(0.4665470, abs=1e-6)


def test_load_rm_bench_from_a_json_array_like_the_repository_file(tmp_path):
    path = tmp_path / "total_dataset.json"
    path.write_text(json.dumps(_rmb_hub_rows()))
    frame, info = load_eval_set({"name": "rmb", "kind": "rm_bench", "path": str(path), "subsets": ["safety"]})
    assert info["n_rows"] == 2 and info["subsets"] == {"safety": 2}
    assert frame["domain"].unique().tolist() == ["safety-refuse", "safety-response"]


@pytest.mark.parametrize(("kind", "hub_id"), [("reward_bench_2", "allenai/reward-bench-2"),
                                              ("rm_bench", "THU-KEG/RM-Bench")])
def test_benchmark_hub_sets_offline_are_errors_naming_the_hub_id(kind, hub_id):
    with pytest.raises(EvalSetNotFoundError, match=hub_id):
        load_eval_set({"name": "b", "kind": kind})


def test_ood_eval_config_takes_the_benchmark_kinds(tmp_path):
    from rewardlab.pipelines.ood_eval.nodes import load_extra_sets

    pd.DataFrame(_rb2_hub_rows()).to_parquet(tmp_path / "rb2.parquet")
    (tmp_path / "rmb.jsonl").write_text("".join(json.dumps(row) + "\n" for row in _rmb_hub_rows()))
    params = {"extra_sets": [{"name": "rb2", "kind": "reward_bench_2", "path": str(tmp_path / "rb2.parquet"),
                              "subsets": ["Ties"]},
                             {"name": "rmb", "kind": "rm_bench", "path": str(tmp_path / "rmb.jsonl")},
                             {"name": "gone", "kind": "rm_bench", "path": str(tmp_path / "absent"), "optional": True}]}
    sets = load_extra_sets(params)
    assert list(sets) == ["rb2", "rmb"]
    assert sets["rb2"]["subset"].unique().tolist() == ["Ties"] and sets["rb2"].attrs["info"]["n_rows"] == 5
    assert sets["rmb"].attrs["info"]["subsets"] == {"chat": 1, "safety": 2}
