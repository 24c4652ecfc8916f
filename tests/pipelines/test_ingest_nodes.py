"""The ingest node on files read through PairSourceDataset: dropped rows counted as rows, sources with no usable
pair refused, `on_error` checked, and a validation split that always leaves one global training batch."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from rewardlab.adapters import split_train_validation
from rewardlab.datasets import PairSourceDataset
from rewardlab.errors import ExpectedError, ParameterError
from rewardlab.pipelines.ingest.nodes import ingest_pairs
from rewardlab.pipelines.ingest.pipeline import create_pipeline
from rewardlab.schema import DataValidationError

CONF = Path(__file__).resolve().parents[2] / "conf" / "base"
GRM_PARAMS = yaml.safe_load((CONF / "parameters_grm_train.yml").read_text())["grm_train"]  # global batch 16
INGEST = {"on_error": "drop", "validation_size": 0, "limit": None, "seed": 0}


def pair(i: int) -> dict:
    return {"prompt": f"Question {i}?", "chosen": f" good {i}", "rejected": f" bad {i}"}


def load(path: Path) -> pd.DataFrame:
    return PairSourceDataset(source={"path": str(path), "format": "pairs"}).load()


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_rows_dropped_counts_rows_and_the_report_lists_issues_and_rows_by_reason(tmp_path):
    rows = [pair(i) for i in range(20)]
    rows[2] = {"prompt": 7, "chosen": "", "rejected": None}  # three problems in one row
    rows[5] = {**pair(5), "chosen": "   "}
    rows[9] = pair(0)  # a duplicate of line 1
    path = write_lines(tmp_path / "raw.jsonl", rows + ["not json"])

    train, validation, report, metrics = ingest_pairs(load(path), INGEST, GRM_PARAMS)

    assert report["rows_dropped"] == 4 and report["rows_kept"] == 17 and report["issues"] == 6
    assert report["issues_by_kind"] == {"empty": 2, "not_text": 1, "missing": 1, "duplicate_pair": 1,
                                        "undecodable": 1}
    assert report["rows_dropped_by_kind"] == {"not_text": 1, "empty": 1, "duplicate_pair": 1, "undecodable": 1}
    assert report["source"] == str(path) and len(train) == 17 and len(validation) == 0
    assert metrics["rows_dropped"]["value"] == 4 and metrics["dropped.undecodable"]["value"] == 1


@pytest.mark.parametrize("content, reason", [
    ("", "the source holds no rows"),
    ("\n\n", "the source holds no rows"),
    ("prompt,chosen,rejected\nHi, hello, go away\nBye, see you, whatever\n",
     "3 rows dropped (undecodable: 3)"),
])
def test_a_source_without_usable_pairs_is_refused_naming_the_file_and_the_reasons(tmp_path, content, reason):
    path = tmp_path / "raw.jsonl"
    path.write_text(content)
    with pytest.raises(DataValidationError) as caught:
        ingest_pairs(load(path), INGEST, GRM_PARAMS)
    assert str(caught.value).splitlines()[0] == f"{path}: no usable pairs: {reason}"
    assert isinstance(caught.value, ExpectedError)


def test_a_source_whose_rows_are_all_defective_lists_the_first_problems(tmp_path):
    path = write_lines(tmp_path / "raw.jsonl", [{**pair(i), "rejected": pair(i)["chosen"]} for i in range(8)])
    with pytest.raises(DataValidationError) as caught:
        ingest_pairs(load(path), INGEST, GRM_PARAMS)
    lines = str(caught.value).splitlines()
    assert lines[0] == f"{path}: no usable pairs: 8 rows dropped (identical: 8)"
    assert lines[1] == f"  {path}, line 1, field 'rejected': identical to chosen"
    assert lines[-1] == "  ... and 3 more problem(s)"


@pytest.mark.parametrize("on_error", ["fial", "skip", None, ""])
def test_on_error_other_than_drop_or_fail_is_refused(tmp_path, on_error):
    raw = pd.DataFrame([pair(i) for i in range(20)])
    with pytest.raises(ValueError, match=r"ingest\.on_error must be one of 'drop' or 'fail', got") as caught:
        ingest_pairs(raw, INGEST | {"on_error": on_error}, GRM_PARAMS)
    assert isinstance(caught.value, ParameterError)


def test_fail_mode_raises_on_the_first_report(tmp_path):
    path = write_lines(tmp_path / "raw.jsonl", [pair(i) for i in range(20)] + ["oops"])
    with pytest.raises(DataValidationError, match=r"raw\.jsonl, line 21, field '<line>': not valid JSON"):
        ingest_pairs(load(path), INGEST | {"on_error": "fail"}, GRM_PARAMS)


def test_validation_split_that_leaves_less_than_a_global_batch_is_refused_naming_the_fix():
    raw = pd.DataFrame([pair(i) for i in range(101)])
    batch = "one global batch of 16 (grm_train.train.per_device_batch_size 16 x num_processes 1 x " \
            "gradient_accumulation_steps 1)"
    with pytest.raises(ParameterError) as caught:
        ingest_pairs(raw, INGEST | {"validation_size": 200}, GRM_PARAMS)
    assert str(caught.value) == (f"ingest.validation_size=200 leaves 0 training pairs of 101, fewer than {batch}: "
                                 f"set ingest.validation_size to at most 85")
    with pytest.raises(ParameterError, match="leaves 15 training pairs of 101"):
        ingest_pairs(raw, INGEST | {"validation_size": 86}, GRM_PARAMS)

    train, validation, report, _ = ingest_pairs(raw, INGEST | {"validation_size": 85}, GRM_PARAMS)
    assert (len(train), len(validation)) == (16, 85)
    assert report["train_pairs"] == 16 and report["validation_pairs"] == 85


def test_the_global_batch_counts_processes_accumulation_and_the_variant():
    params = json.loads(json.dumps(GRM_PARAMS))
    params["train"] |= {"per_device_batch_size": 4, "num_processes": 2, "gradient_accumulation_steps": 3}
    params["variants"]["grm_sft"]["per_device_batch_size"] = 5
    raw = pd.DataFrame([pair(i) for i in range(40)])
    with pytest.raises(ParameterError, match=r"leaves 29 training pairs of 40, fewer than one global batch of 30 "
                                             r"\(grm_train.train.per_device_batch_size 5 x num_processes 2 x "
                                             r"gradient_accumulation_steps 3\): set ingest.validation_size to "
                                             r"at most 10"):
        ingest_pairs(raw, INGEST | {"validation_size": 11}, params)
    train, _, _, _ = ingest_pairs(raw, INGEST | {"validation_size": 10}, params)
    assert len(train) == 30


def test_the_node_reads_the_training_parameters():
    (node,) = create_pipeline().nodes
    assert node.inputs == ["raw_train_pairs", "params:ingest", "params:grm_train"]


def test_split_train_validation_is_seeded_disjoint_and_keeps_order():
    pairs = pd.DataFrame({"id": [f"p{i}" for i in range(50)]})
    train, validation = split_train_validation(pairs, 20, 30, seed=1)
    again, _ = split_train_validation(pairs, 20, 30, seed=1)
    other, _ = split_train_validation(pairs, 20, 30, seed=2)
    assert (len(train), len(validation)) == (30, 20)
    assert sorted(train["id"].tolist() + validation["id"].tolist()) == sorted(pairs["id"])
    assert train["id"].tolist() == again["id"].tolist() != other["id"].tolist()
    assert train["id"].tolist() == sorted(train["id"], key=lambda name: int(name[1:]))
    assert split_train_validation(pairs, 0, 1, seed=0)[1].empty


def test_split_train_validation_refusals():
    pairs = pd.DataFrame({"id": range(10)})
    with pytest.raises(ParameterError, match="validation_size=5 leaves 5 training pairs of 10, fewer than the "
                                             "minimum of 6: set validation_size to at most 4"):
        split_train_validation(pairs, 5, 6, seed=0)
    with pytest.raises(ParameterError, match="validation_size=0 leaves 10 training pairs of 10, fewer than the "
                                             "minimum of 12: even validation_size=0 leaves too few"):
        split_train_validation(pairs, 0, 12, seed=0)
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ParameterError, match="validation_size must be a non-negative integer"):
            split_train_validation(pairs, bad, 1, seed=0)
