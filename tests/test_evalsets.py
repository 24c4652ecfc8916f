import gzip
import json
import logging
import math

import datasets
import numpy as np
import pandas as pd
import pytest

from rewardlab.schema import DataValidationError, validate_pairs
from rewardlab.evalsets import (
    EVAL_COLUMNS,
    EvalSetFormatError,
    EvalSetNotFoundError,
    hhh_to_pairs,
    load_eval_set,
    mt_bench_to_pairs,
    reward_bench_to_pairs,
    rewardbench_section_scores,
)

# ----------------------------------------------------------------------------------- hub-shaped rows


def _hhh_rows() -> list[dict]:
    return [
        {"input": "How do I pick a lock?", "targets": {"choices": ["I can't help.", "Use a pin."], "labels": [1, 0]}},
        {"input": "Is the sky blue?", "targets": {"choices": ["No.", "Yes, by scattering."], "labels": [0, 1]}},
    ]


def _msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def _mt_row(turn: int, winner: str, qid: int = 81, judge: str = "author_0") -> dict:
    conv_a = [_msg("user", "Q1"), _msg("assistant", "A1 by a"), _msg("user", "Q2"), _msg("assistant", "A2 by a")]
    conv_b = [_msg("user", "Q1"), _msg("assistant", "A1 by b"), _msg("user", "Q2"), _msg("assistant", "A2 by b")]
    return {
        "question_id": qid,
        "model_a": "alpha",
        "model_b": "beta",
        "winner": winner,
        "judge": judge,
        "conversation_a": conv_a,
        "conversation_b": conv_b,
        "turn": turn,
    }


def _mt_rows() -> list[dict]:
    return [_mt_row(1, "model_a"), _mt_row(2, "model_b"), _mt_row(1, "tie"), _mt_row(2, "tie (bothbad)")]


def _rb_rows() -> list[dict]:
    return [
        {"prompt": "p0", "chosen": "good0", "rejected": "bad0", "chosen_model": "m1", "rejected_model": "m2",
         "subset": "alpacaeval-easy", "id": 3},
        {"prompt": "p1", "chosen": "good1", "rejected": "bad1", "chosen_model": "m3", "rejected_model": "m4",
         "subset": "math-prm", "id": 17},
        {"prompt": "p2", "chosen": "good2", "rejected": "bad2", "chosen_model": "m5", "rejected_model": "m6",
         "subset": "hep-go", "id": 40},
    ]


# ----------------------------------------------------------------------------------- converters


@pytest.mark.parametrize("as_dataset", [False, True])
def test_hhh_chosen_is_label_one_in_either_order(as_dataset):
    rows = datasets.Dataset.from_list(_hhh_rows()) if as_dataset else pd.DataFrame(_hhh_rows())
    pairs = hhh_to_pairs(rows, subset="harmless")
    assert list(pairs.columns) == EVAL_COLUMNS
    assert pairs["chosen"].tolist() == ["I can't help.", "Yes, by scattering."]
    assert pairs["rejected"].tolist() == ["Use a pin.", "No."]
    assert pairs["prompt"].tolist() == ["How do I pick a lock?", "Is the sky blue?"]
    assert pairs["subset"].eq("harmless").all()
    assert pairs["id"].is_unique
    assert pairs["margin"].isna().all()


def test_hhh_bad_labels_name_the_row():
    rows = _hhh_rows()
    rows[1]["targets"] = {"choices": ["a", "b"], "labels": [0, 0]}
    with pytest.raises(EvalSetFormatError, match="row 1 field 'targets'"):
        hhh_to_pairs(rows, subset="helpful")


def test_mt_bench_drops_and_counts_ties():
    pairs, n_ties = mt_bench_to_pairs(pd.DataFrame(_mt_rows()), split="human")
    assert n_ties == 2
    assert len(pairs) == 2
    turn1, turn2 = pairs.iloc[0], pairs.iloc[1]
    # Turn 1: the shared first question is the prompt, the first answers are the responses.
    assert turn1["prompt"] == [_msg("user", "Q1")]
    assert turn1["chosen"] == [_msg("assistant", "A1 by a")]
    assert turn1["rejected"] == [_msg("assistant", "A1 by b")]
    assert (turn1["model_chosen"], turn1["subset"]) == ("alpha", "human/turn1")
    # Turn 2: the sides differ from their first answers on, so each response is its side's continuation.
    assert turn2["prompt"] == [_msg("user", "Q1")]
    assert turn2["chosen"] == [_msg("assistant", "A1 by b"), _msg("user", "Q2"), _msg("assistant", "A2 by b")]
    assert turn2["rejected"] == [_msg("assistant", "A1 by a"), _msg("user", "Q2"), _msg("assistant", "A2 by a")]
    assert (turn2["model_chosen"], turn2["model_rejected"], turn2["subset"]) == ("beta", "alpha", "human/turn2")
    assert not pairs["is_tie"].any()
    assert pairs["margin"].isna().all()


def test_mt_bench_keeps_ties_when_asked():
    pairs, n_ties = mt_bench_to_pairs(datasets.Dataset.from_list(_mt_rows()), split="gpt4_pair", keep_ties=True)
    assert n_ties == 2 and len(pairs) == 4
    ties = pairs[pairs["is_tie"]]
    assert ties["margin"].tolist() == [0.0, 0.0]
    assert ties["model_chosen"].eq("alpha").all()
    assert pairs["source"].eq("mt_bench/gpt4_pair").all()
    assert pairs["id"].is_unique


def test_mt_bench_shared_first_answer_goes_into_the_prompt():
    row = _mt_row(2, "model_a")
    row["conversation_b"][1] = _msg("assistant", "A1 by a")  # both sides gave the same first answer
    pairs, _ = mt_bench_to_pairs([row])
    assert pairs.loc[0, "prompt"] == [_msg("user", "Q1"), _msg("assistant", "A1 by a"), _msg("user", "Q2")]
    assert pairs.loc[0, "chosen"] == [_msg("assistant", "A2 by a")]


def test_mt_bench_turn_filter():
    pairs, n_ties = mt_bench_to_pairs(_mt_rows(), turns=[1])
    assert pairs["turn"].tolist() == [1]
    assert n_ties == 1  # only the turn-1 tie is counted


def test_converted_sets_pass_pair_schema_validation():
    # Extra columns aside, HHH, RewardBench and MT-Bench turn-1 pairs are valid pair tables.
    mt_turn1, _ = mt_bench_to_pairs(_mt_rows(), turns=[1])
    for pairs in (hhh_to_pairs(_hhh_rows(), subset="harmless"), reward_bench_to_pairs(_rb_rows()), mt_turn1):
        clean, issues = validate_pairs(pairs, on_error="fail")
        assert issues == [] and len(clean) == len(pairs)
        assert clean["id"].tolist() == pairs["id"].tolist()


def test_mt_bench_unknown_winner_is_an_error():
    with pytest.raises(EvalSetFormatError, match="row 0 field 'winner'"):
        mt_bench_to_pairs([_mt_row(1, "model_c")])


def test_reward_bench_conversion_and_subset_filter():
    pairs = reward_bench_to_pairs(pd.DataFrame(_rb_rows()))
    assert pairs["id"].tolist() == ["reward_bench/3", "reward_bench/17", "reward_bench/40"]
    assert pairs[["chosen", "rejected", "subset"]].iloc[1].tolist() == ["good1", "bad1", "math-prm"]
    assert pairs["chosen_model"].tolist() == ["m1", "m3", "m5"]
    only_code = reward_bench_to_pairs(_rb_rows(), subsets=["hep-go"])
    assert only_code["subset"].tolist() == ["hep-go"]


# ----------------------------------------------------------------------------------- section scores


def test_rewardbench_sections_weight_math_like_all_code():
    table = {
        "alpacaeval-easy": (0.9, 100),
        "mt-bench-easy": (0.5, 28),
        "llmbar-natural": (0.6, 100),
        "donotanswer": (0.4, 136),
        "xstest-should-respond": (0.8, 250),
        "math-prm": (0.3, 447),
        "hep-python": (0.9, 164),
        "hep-go": (0.7, 164),
        "not-a-subset": (0.0, 1000),
    }
    scores = rewardbench_section_scores(table)
    chat = (0.9 * 100 + 0.5 * 28) / 128
    chat_hard = 0.6
    safety = (0.4 * 136 + 0.8 * 250) / 386
    # math-prm counts as much as the two code subsets together (164 + 164), not as its 447 pairs.
    reasoning = (0.3 * 328 + 0.9 * 164 + 0.7 * 164) / (328 + 328)
    assert scores["chat"] == pytest.approx(chat)
    assert scores["chat-hard"] == pytest.approx(chat_hard)
    assert scores["safety"] == pytest.approx(safety)
    assert scores["reasoning"] == pytest.approx(reasoning)
    assert scores["reasoning"] == pytest.approx(0.5 * 0.3 + 0.5 * 0.8)
    assert scores["score"] == pytest.approx((chat + chat_hard + safety + reasoning) / 4)


def test_rewardbench_sections_math_alone_and_missing_section():
    scores = rewardbench_section_scores({"math-prm": (0.3, 447), "alpacaeval-hard": (1.0, 95)})
    assert scores["reasoning"] == pytest.approx(0.3)
    assert math.isnan(scores["safety"]) and math.isnan(scores["score"])


# ----------------------------------------------------------------------------------- loading


def test_load_hhh_from_save_to_disk_config_dirs(tmp_path):
    for config in ("harmless", "honest"):
        datasets.DatasetDict({"test": datasets.Dataset.from_list(_hhh_rows())}).save_to_disk(tmp_path / config)
    spec = {"name": "hhh", "kind": "hhh", "path": str(tmp_path), "configs": ["harmless", "honest"]}
    pairs, info = load_eval_set(spec)
    assert len(pairs) == 4 and pairs["id"].is_unique
    assert info["subsets"] == {"harmless": 2, "honest": 2}
    assert info["name"] == "hhh" and info["n_pairs"] == 4


def test_load_mt_bench_from_dataset_dict_with_splits(tmp_path):
    splits = {
        "human": datasets.Dataset.from_list(_mt_rows()),
        "gpt4_pair": datasets.Dataset.from_list(_mt_rows()[:2]),
    }
    datasets.DatasetDict(splits).save_to_disk(tmp_path / "mt")
    pairs, info = load_eval_set({"name": "mt", "kind": "mt_bench", "path": str(tmp_path / "mt")})
    assert info["n_ties"] == 2 and not info["ties_kept"]
    assert info["subsets"] == {"gpt4_pair/turn1": 1, "gpt4_pair/turn2": 1, "human/turn1": 1, "human/turn2": 1}
    kept, info = load_eval_set({"name": "mt", "kind": "mt_bench", "path": str(tmp_path / "mt"), "keep_ties": True})
    assert len(kept) == 6 and kept["is_tie"].sum() == 2


def test_load_reward_bench_from_parquet(tmp_path):
    file = tmp_path / "filtered.parquet"
    pd.DataFrame(_rb_rows()).to_parquet(file)
    pairs, info = load_eval_set({"name": "rb", "kind": "reward_bench", "path": str(file), "subsets": ["math-prm"]})
    assert pairs["subset"].tolist() == ["math-prm"]
    assert info["location"] == str(file)


def test_load_world_pairs_from_parquet(tmp_path):
    frame = pd.DataFrame(
        {"id": ["w0", "w1"], "prompt": ["p", "q"], "chosen": ["a", "b"], "rejected": ["c", "d"],
         "margin": [np.nan, 1.0], "source": ["world", "world"]}
    )
    frame.to_parquet(tmp_path / "ood_both.parquet")
    pairs, _ = load_eval_set({"name": "ood_both", "kind": "world", "path": str(tmp_path / "ood_both.parquet")})
    assert list(pairs.columns) == EVAL_COLUMNS
    assert pairs["subset"].eq("ood_both").all()


def test_missing_set_is_an_error_naming_it(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(EvalSetNotFoundError, match=r"'hhh_local'.*nowhere"):
        load_eval_set({"name": "hhh_local", "kind": "hhh", "path": str(missing)})


def test_missing_hub_set_offline_is_an_error_naming_the_hub_id():
    with pytest.raises(EvalSetNotFoundError, match="allenai/reward-bench"):
        load_eval_set({"name": "rb", "kind": "reward_bench"})


def test_missing_optional_set_warns_and_returns_none(tmp_path, caplog):
    spec = {"name": "mt", "kind": "mt_bench", "path": str(tmp_path / "absent"), "optional": True}
    with caplog.at_level(logging.WARNING, logger="rewardlab.evalsets"):
        assert load_eval_set(spec) is None
    assert "'mt'" in caplog.text and "absent" in caplog.text


def test_missing_config_part_is_reported(tmp_path):
    datasets.Dataset.from_list(_hhh_rows()).save_to_disk(tmp_path / "harmless")
    with pytest.raises(EvalSetNotFoundError, match="helpful"):
        load_eval_set({"name": "hhh", "kind": "hhh", "path": str(tmp_path), "configs": ["harmless", "helpful"]})


def test_unknown_kind_is_rejected():
    with pytest.raises(ValueError, match="unknown kind"):
        load_eval_set({"name": "x", "kind": "csv", "path": "x"})


def test_load_pairs_kind_goes_through_the_ingestion_adapters(tmp_path):
    pytest.importorskip("rewardlab.adapters")
    frame = pd.DataFrame(
        {"id": ["x0", "x1"], "prompt": ["p", "q"], "chosen": ["a", "b"], "rejected": ["c", "d"],
         "margin": [np.nan, np.nan], "source": ["file", "file"]}
    )
    frame.to_parquet(tmp_path / "pairs.parquet")
    spec = {"name": "mine", "kind": "pairs", "path": str(tmp_path / "pairs.parquet"), "format": "pairs",
            "optional": False}
    pairs, info = load_eval_set(spec)
    assert sorted(pairs["id"]) == ["x0", "x1"]
    assert info["subsets"] == {"mine": 2}
    assert list(pairs.columns) == EVAL_COLUMNS


def test_real_hh_rlhf_sample_as_an_evaluation_set(hh_rlhf_path, caplog):
    spec = {"name": "hh_rlhf", "kind": "pairs", "path": str(hh_rlhf_path), "format": "hh_rlhf"}
    with caplog.at_level(logging.WARNING, logger="rewardlab.evalsets"):
        pairs, info = load_eval_set(spec)
    # Defective rows (e.g. empty responses) are left out and counted, not fatal, for evaluation.
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as handle:
        n_lines = sum(1 for line in handle if line.strip())
    assert info["n_pairs"] + info["dropped_rows"] == n_lines
    assert pairs["id"].is_unique and pairs["subset"].eq("hh_rlhf").all()
    assert (info["dropped_rows"] > 0) == ("left out" in caplog.text)


def test_local_files_are_read_by_the_ingestion_readers_bom_crlf_and_bad_lines_included(tmp_path):
    rows = [{"id": f"w{i}", "prompt": f"p{i}", "chosen": f"a{i}", "rejected": f"b{i}"} for i in range(3)]
    text = "\ufeff" + "".join(json.dumps(row) + "\r\n" for row in rows)
    (tmp_path / "ood.jsonl").write_bytes(text.encode("utf-8"))
    (tmp_path / "ood.jsonl.gz").write_bytes(gzip.compress(text.encode("utf-8")))
    for name in ("ood.jsonl", "ood.jsonl.gz"):
        pairs, info = load_eval_set({"name": "ood", "kind": "world", "path": str(tmp_path / name)})
        assert pairs["id"].tolist() == ["w0", "w1", "w2"] and info["n_pairs"] == 3

    (tmp_path / "rb.csv").write_bytes("\ufeffprompt,chosen,rejected,subset,id\r\np0,good0,bad0,math-prm,3\r\n".encode())
    pairs, _ = load_eval_set({"name": "rb", "kind": "reward_bench", "path": str(tmp_path / "rb.csv")})
    assert pairs[["prompt", "chosen", "rejected", "subset"]].values.tolist() == [["p0", "good0", "bad0", "math-prm"]]

    (tmp_path / "bad.jsonl").write_bytes(text.encode("utf-8") + b"{not json\r\n")
    with pytest.raises(DataValidationError, match=r"bad\.jsonl, line 4, field '<line>': not valid JSON"):
        load_eval_set({"name": "ood", "kind": "world", "path": str(tmp_path / "bad.jsonl")})
