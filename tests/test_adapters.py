"""Loaders and format adapters: the real HH-RLHF sample, hub-shaped rows of each format, every reader."""

import csv
import gzip
import json
import math

import datasets
import pandas as pd
import pytest

from rewardlab.adapters import (
    FORMATS,
    load_pairs,
    pairs_from_records,
    split_conversations,
    split_hh_dialogues,
    split_plain_texts,
)
from rewardlab.schema import MAX_LISTED_ISSUES, DataValidationError, ValidationIssue, summarize_issues

MARKER = "\n\nAssistant:"


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def write_jsonl(path, rows):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as handle:
        for row in rows:
            handle.write((row if isinstance(row, str) else json.dumps(row)) + "\n")
    return path


# ------------------------------------------------------------------------------------ HH-RLHF (real)


def test_hh_rlhf_real_sample_loads_and_splits_every_dialogue(hh_rlhf_path):
    with gzip.open(hh_rlhf_path, "rt", encoding="utf-8") as handle:
        originals = [json.loads(line) for line in handle]
    assert len(originals) == 2312

    df, issues = load_pairs({"path": str(hh_rlhf_path), "format": "hh_rlhf", "on_error": "drop"})

    dropped = sorted({issue.row for issue in issues})
    assert len(df) + len(dropped) == len(originals)
    # Every dropped line is explained, independently of the adapter: its chosen dialogue ends in an empty
    # assistant turn. No other line is dropped.
    empty_final_turn = [line for line, row in enumerate(originals, start=1)
                        if not row["chosen"][row["chosen"].rfind(MARKER) + len(MARKER):].strip()]
    assert dropped == empty_final_turn
    assert all(issue.unit == "line" and issue.field == "chosen" and issue.kind == "empty" for issue in issues)
    assert all(str(issue).startswith(f"{hh_rlhf_path}, line {issue.row}, field 'chosen'") for issue in issues)

    kept_lines = [line for line in range(1, len(originals) + 1) if line not in set(dropped)]
    diverged_before_last_turn = 0
    for (_, pair), line in zip(df.iterrows(), kept_lines):
        original = originals[line - 1]
        assert pair["prompt"] + pair["chosen"] == original["chosen"]
        assert pair["prompt"] + pair["rejected"] == original["rejected"]
        assert pair["prompt"].startswith("\n\nHuman:") and pair["prompt"].endswith("Assistant:")
        assert pair["chosen"].startswith(" ") and pair["rejected"].startswith(" ")
        assert pair["chosen"] != pair["rejected"]
        last_turns = {text.rfind(MARKER) + len(MARKER) for text in (original["chosen"], original["rejected"])}
        if last_turns != {len(pair["prompt"])}:
            diverged_before_last_turn += 1
    assert df["id"].is_unique
    assert (df["source"] == "harmless-base-test").all() and df["margin"].isna().all()
    print(f"\nHH-RLHF harmless-base-test: {len(originals)} lines, {len(df)} kept, dropped by kind: "
          f"{summarize_issues(issues)}, kept rows whose dialogues diverge before the last assistant turn: "
          f"{diverged_before_last_turn}")

    with pytest.raises(DataValidationError) as caught:
        load_pairs({"path": str(hh_rlhf_path), "format": "hh_rlhf"})
    assert f"{hh_rlhf_path}, line {dropped[0]}, field 'chosen': empty" in str(caught.value)

    limited, _ = load_pairs({"path": str(hh_rlhf_path), "format": "hh_rlhf", "on_error": "drop", "limit": 50})
    assert len(limited) == 50 - sum(1 for line in dropped if line <= 50)


def test_hh_dialogues_that_diverge_early_split_at_the_last_shared_assistant_turn():
    chosen = "\n\nHuman: Hi\n\nAssistant: Hello!\n\nHuman: How are you?\n\nAssistant: Fine, thanks."
    rejected = "\n\nHuman: Hi\n\nAssistant: Go away."
    prompt, chosen_response, rejected_response = split_hh_dialogues(chosen, rejected)
    assert prompt == "\n\nHuman: Hi\n\nAssistant:"
    assert chosen_response == " Hello!\n\nHuman: How are you?\n\nAssistant: Fine, thanks."
    assert rejected_response == " Go away."


def test_hh_rows_without_a_shared_assistant_turn_or_text_are_reported():
    rows = [
        {"chosen": "\n\nHuman: A\n\nAssistant: yes", "rejected": "\n\nHuman: B\n\nAssistant: no"},
        {"chosen": ["not", "a", "dialogue"], "rejected": "\n\nHuman: A\n\nAssistant: no"},
        {"chosen": "\n\nHuman: A\n\nAssistant: yes", "rejected": "\n\nHuman: A\n\nAssistant: no"},
    ]
    df, issues = pairs_from_records(rows, "hh_rlhf", "hh.jsonl", "drop", locations=[1, 2, 3], unit="line")
    assert [str(issue) for issue in issues] == [
        "hh.jsonl, line 1, field 'chosen+rejected': the dialogues share no '\\n\\nAssistant:' turn",
        "hh.jsonl, line 2, field 'chosen': expected a dialogue string, got list",
    ]
    assert df[["prompt", "chosen", "rejected"]].values.tolist() == [["\n\nHuman: A\n\nAssistant:", " yes", " no"]]


# ------------------------------------------------------------------------------- hub-shaped formats


UNIFIED_FEEDBACK_ROWS = [
    {"id": "uf-0", "conv_A": [user("What is 2+2?"), assistant("4")],
     "conv_B": [user("What is 2+2?"), assistant("5")], "conv_A_rating": 9.0, "conv_B_rating": 2.0,
     "num_turns": 1, "source": "synthetic-math"},
    {"id": "uf-1", "conv_A": [user("Name a fruit."), assistant("A brick.")],
     "conv_B": [user("Name a fruit."), assistant("An apple.")], "conv_A_rating": 3.0, "conv_B_rating": 7.5,
     "num_turns": 1, "source": "synthetic-qa"},
    {"id": "uf-2", "conv_A": [user("Say hi."), assistant("Hi.")], "conv_B": [user("Say hi."), assistant("Hello.")],
     "conv_A_rating": 5.0, "conv_B_rating": 5.0, "num_turns": 1, "source": "synthetic-qa"},
    {"id": "uf-3", "conv_A": [user("Hi"), assistant("Hello"), user("Joke?"), assistant("Knock knock.")],
     "conv_B": [user("Hi"), assistant("Hello"), user("Joke?"), assistant("No.")],
     "conv_A_rating": 1, "conv_B_rating": 0, "num_turns": 2, "source": "synthetic-chat"},
]


def test_unified_feedback_hub_shaped_parquet_directory(tmp_path):
    directory = tmp_path / "unified_feedback"
    directory.mkdir()
    datasets.Dataset.from_list(UNIFIED_FEEDBACK_ROWS).to_parquet(str(directory / "train.parquet"))
    spec = {"path": str(directory), "format": "unified_feedback", "cache_dir": str(tmp_path / "cache")}

    df, issues = load_pairs(spec)  # on_error="fail": a tie is dropped, not an error

    assert df["id"].tolist() == ["uf-0", "uf-1", "uf-3"]
    assert df["prompt"].tolist() == [[user("What is 2+2?")], [user("Name a fruit.")],
                                     [user("Hi"), assistant("Hello"), user("Joke?")]]
    assert df["chosen"].tolist() == [[assistant("4")], [assistant("An apple.")], [assistant("Knock knock.")]]
    assert df["rejected"].tolist() == [[assistant("5")], [assistant("A brick.")], [assistant("No.")]]
    assert df["margin"].tolist() == [7.0, 4.5, 1.0]
    assert df["source"].tolist() == ["synthetic-math", "synthetic-qa", "synthetic-chat"]
    assert [str(issue) for issue in issues] == [
        f"{directory}:train, row 2, field 'conv_A_rating+conv_B_rating': tie: both conversations rated 5"]
    assert summarize_issues(issues) == {"tie": 1}


def test_unified_feedback_ratings_must_be_numbers():
    row = {**UNIFIED_FEEDBACK_ROWS[0], "conv_B_rating": "good"}
    _, issues = pairs_from_records([row], "unified_feedback", on_error="drop")
    assert [str(issue) for issue in issues] == [
        "<memory>, row 0, field 'conv_B_rating': expected a number, got 'good'"]


SKYWORK_ROWS = [
    {"chosen": [user("Capital of France?"), assistant("Paris.")],
     "rejected": [user("Capital of France?"), assistant("Lyon.")], "source": "magpie_ultra"},
    {"chosen": [{"role": "system", "content": "Be terse."}, user("2*3?"), assistant("6")],
     "rejected": [{"role": "system", "content": "Be terse."}, user("2*3?"), assistant("Six, because...")],
     "source": "offsetbias"},
    {"chosen": [user("Hi"), assistant("Hello")], "rejected": [user("Hi"), user("Hello?")], "source": "x"},
]


def test_skywork_rows_from_a_saved_dataset_dict(tmp_path):
    saved = tmp_path / "skywork"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(SKYWORK_ROWS)}).save_to_disk(str(saved))

    df, issues = load_pairs({"path": str(saved), "format": "skywork", "on_error": "drop"})

    assert df["prompt"].tolist() == [[user("Capital of France?")],
                                     [{"role": "system", "content": "Be terse."}, user("2*3?")]]
    assert df["chosen"].tolist() == [[assistant("Paris.")], [assistant("6")]]
    assert df["rejected"].tolist() == [[assistant("Lyon.")], [assistant("Six, because...")]]
    assert df["source"].tolist() == ["magpie_ultra", "offsetbias"]
    assert [str(issue) for issue in issues] == [
        f"{saved}:train, row 2, field 'rejected': no assistant turn after the 1 shared message(s) (roles: user)"]


def test_trl_explicit_plain_and_conversational(tmp_path):
    plain = write_jsonl(tmp_path / "explicit.jsonl", [
        {"prompt": "The sky is", "chosen": " blue.", "rejected": " green."},
        {"prompt": "2+2=", "chosen": "4", "rejected": "5", "score_chosen": 9.0, "score_rejected": 1.5},
    ])
    df, issues = load_pairs({"path": str(plain), "format": "trl_explicit", "source": "toy"})
    assert issues == []
    assert df[["prompt", "chosen", "rejected"]].values.tolist() == [["The sky is", " blue.", " green."],
                                                                   ["2+2=", "4", "5"]]
    assert math.isnan(df.loc[0, "margin"]) and df.loc[1, "margin"] == 7.5
    assert (df["source"] == "toy").all()

    conversational = [{"prompt": [user("Hi")], "chosen": [assistant("Hello!")], "rejected": [assistant("Bye.")]}]
    df, issues = pairs_from_records(conversational, "trl_explicit")
    assert issues == [] and df.loc[0, "chosen"] == [assistant("Hello!")]


def test_trl_implicit_plain_cuts_the_shared_prefix_at_a_word_boundary():
    assert split_plain_texts("The sky is blue today.", "The sky is bright.") == \
        ("The sky is", " blue today.", " bright.")
    assert split_plain_texts("Yes", "Yes indeed") == ("", "Yes", "Yes indeed")
    assert split_plain_texts("Q: why?\n\nA: because", "Q: why?\n\nA: no idea") == \
        ("Q: why?\n\nA:", " because", " no idea")
    # A dialogue-shaped text is cut at the last shared turn, not inside the answer.
    assert split_plain_texts("\n\nHuman: hi\n\nAssistant: Sure thing", "\n\nHuman: hi\n\nAssistant: Sure, no") == \
        ("\n\nHuman: hi\n\nAssistant:", " Sure thing", " Sure, no")


def test_trl_implicit_rows_plain_and_conversational():
    plain = [{"chosen": "Best pet: a dog, loyal.", "rejected": "Best pet: a rock."},
             {"chosen": "same text", "rejected": "same text"},
             {"chosen": "text", "rejected": [assistant("messages")]}]
    df, issues = pairs_from_records(plain, "trl_implicit", "implicit.jsonl", "drop", locations=[1, 2, 3],
                                    unit="line")
    assert df[["prompt", "chosen", "rejected"]].values.tolist() == [["Best pet: a", " dog, loyal.", " rock."]]
    assert [str(issue) for issue in issues] == [
        "implicit.jsonl, line 2, field 'rejected': identical to chosen",
        "implicit.jsonl, line 3, field 'rejected': list rejected with str chosen"]

    conversational = [{"chosen": [user("Hi"), assistant("Hello")], "rejected": [user("Hi"), assistant("Go")]},
                      {"chosen": [user("A"), assistant("B"), user("C"), assistant("D")],
                       "rejected": [user("A"), assistant("B"), user("C"), assistant("E"), assistant("F")]}]
    df, issues = pairs_from_records(conversational, "trl_implicit")
    assert issues == []
    assert df["prompt"].tolist() == [[user("Hi")], [user("A"), assistant("B"), user("C")]]
    assert df["chosen"].tolist() == [[assistant("Hello")], [assistant("D")]]
    assert df["rejected"].tolist() == [[assistant("Go")], [assistant("E"), assistant("F")]]


@pytest.mark.parametrize("format, row, field, kind, problem", [
    ("skywork", {"chosen": [user("Hi")], "rejected": [user("Hi"), assistant("Yo")]},
     "chosen", "no_assistant_turn", "no assistant turn (roles: user)"),
    ("trl_implicit", {"chosen": [user("A"), assistant("B"), user("C"), assistant("D")],
                      "rejected": [user("A"), assistant("B"), user("C")]},
     "rejected", "no_assistant_turn", "no assistant turn after the 2 shared message(s) (roles: user)"),
    ("trl_explicit", {"prompt": [user("Hi")], "chosen": [user("Hello?")], "rejected": [assistant("Yo")]},
     "chosen", "no_assistant_turn", "no assistant turn (roles: user)"),
    ("pairs", {"prompt": [user("Hi")], "chosen": [assistant("Yo")], "rejected": [{"role": "system", "content": "x"}]},
     "rejected", "no_assistant_turn", "no assistant turn (roles: system)"),
    ("skywork", {"chosen": [user("Capital of France?"), assistant("Paris.")],
                 "rejected": [user("Capital of Spain?"), assistant("Madrid.")]},
     "chosen+rejected", "prompt_mismatch", "prompts differ between chosen and rejected at message 0: "
     "chosen has user 'Capital of France?', rejected has user 'Capital of Spain?'"),
    ("trl_implicit", {"chosen": [user("A"), assistant("B"), user("C"), assistant("D")],
                      "rejected": [user("A"), assistant("B"), {"role": "system", "content": "x " * 40}, user("C"),
                                   assistant("E")]},
     "chosen+rejected", "prompt_mismatch", "prompts differ between chosen and rejected at message 2: chosen has "
     "user 'C', rejected has system 'x x x x x x x x x x x x x x x x x x x x...'"),
    ("trl_explicit", {"prompt": [], "chosen": [user("Q1"), assistant("A")], "rejected": [user("Q2"), assistant("B")]},
     "chosen+rejected", "prompt_mismatch",
     "prompts differ between chosen and rejected at message 0: chosen has user 'Q1', rejected has user 'Q2'"),
    ("unified_feedback", {"conv_A": [user("Q1"), assistant("A")], "conv_B": [user("Q2"), assistant("B")],
                          "conv_A_rating": 2, "conv_B_rating": 1},
     "conv_A+conv_B", "prompt_mismatch",
     "prompts differ between conv_A and conv_B at message 0: conv_A has user 'Q1', conv_B has user 'Q2'"),
])
def test_conversations_without_an_assistant_turn_or_with_different_prompts_say_so(format, row, field, kind,
                                                                                  problem):
    df, issues = pairs_from_records([row], format, "chats.jsonl", "drop", locations=[1], unit="line")
    assert len(df) == 0
    assert issues == [ValidationIssue("chats.jsonl", 1, field, problem, kind, "line")]


def test_split_conversations_keeps_a_message_on_each_side_of_identical_conversations():
    conversation = [user("Hi"), assistant("Hello")]
    assert split_conversations(conversation, conversation) == ([user("Hi")], [assistant("Hello")],
                                                               [assistant("Hello")])


def test_pairs_format_keeps_schema_columns_only():
    df, issues = pairs_from_records([{"id": "a", "prompt": "", "chosen": "x", "rejected": "y", "extra": 1}])
    assert issues == [] and "extra" not in df.columns and df.loc[0, "id"] == "a"


# ---------------------------------------------------------------------------------------------- readers


def test_jsonl_reader_reports_undecodable_lines_with_their_line_numbers(tmp_path):
    path = tmp_path / "data.jsonl"
    write_jsonl(path, [{"prompt": "p", "chosen": " a", "rejected": " b"}, "",
                       '{"prompt": "p", "chosen": " broken',
                       "[1, 2]",
                       {"prompt": "q", "chosen": " a", "rejected": " b"}])
    with open(path, "ab") as handle:
        handle.write(b'{"prompt": "\xff\xfe", "chosen": " a", "rejected": " b"}\n')
    spec = {"path": str(path), "format": "pairs"}

    with pytest.raises(DataValidationError) as caught:
        load_pairs(spec)
    message = str(caught.value)
    assert f"{path}, line 3, field '<line>': not valid JSON" in message
    assert f"{path}, line 4, field '<line>': expected a JSON object, got list" in message
    assert f"{path}, line 6, field '<line>': not valid JSON" in message

    df, issues = load_pairs({**spec, "on_error": "drop"})
    assert df["prompt"].tolist() == ["p", "q"]
    assert [(issue.row, issue.field, issue.kind, issue.unit) for issue in issues] == [
        (3, "<line>", "undecodable", "line"), (4, "<line>", "undecodable", "line"),
        (6, "<line>", "undecodable", "line")]


def test_byte_order_mark_and_crlf_line_ends_are_read_in_jsonl_gzipped_jsonl_and_csv(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f" c{i}", "rejected": f" r{i}"} for i in range(3)]
    jsonl = ("\ufeff" + "".join(json.dumps(row) + "\r\n" for row in rows)).encode("utf-8")
    csv_text = ("\ufeffprompt,chosen,rejected\r\n" + "".join(f"p{i}, c{i}, r{i}\r\n" for i in range(3))).encode()
    files = {"bom.jsonl": jsonl, "bom.jsonl.gz": gzip.compress(jsonl), "bom.csv": csv_text,
             "bom.csv.gz": gzip.compress(csv_text)}
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
        df, issues = load_pairs({"path": str(tmp_path / name)})
        assert issues == [], name
        assert df[["prompt", "chosen", "rejected"]].values.tolist() == [[f"p{i}", f" c{i}", f" r{i}"] for i in range(3)]
    # Only the file's first bytes may be a byte-order mark; elsewhere it is a broken line.
    (tmp_path / "late.jsonl").write_bytes(jsonl + jsonl)
    _, issues = load_pairs({"path": str(tmp_path / "late.jsonl"), "on_error": "drop"})
    assert [(issue.row, issue.kind) for issue in issues] == [(4, "undecodable"), (5, "duplicate_pair"),
                                                             (6, "duplicate_pair")]


def test_gzipped_jsonl_reader_and_limit(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f" c{i}", "rejected": f" r{i}"} for i in range(10)]
    rows[7]["chosen"] = ""
    path = write_jsonl(tmp_path / "pairs.jsonl.gz", rows)
    df, issues = load_pairs({"path": str(path), "on_error": "drop"})
    assert len(df) == 9 and [str(issue) for issue in issues] == [f"{path}, line 8, field 'chosen': empty"]
    assert df.loc[0, "source"] == "pairs"
    limited, issues = load_pairs({"path": str(path), "limit": 3})
    assert limited["prompt"].tolist() == ["p0", "p1", "p2"] and issues == []


def test_parquet_reader_round_trips_conversational_rows_and_names_rows_by_index(tmp_path):
    rows = [{"prompt": [user("Hi")], "chosen": [assistant("Hello")], "rejected": [assistant("Bye")]},
            {"prompt": [user("Again")], "chosen": [assistant("")], "rejected": [assistant("No")]},
            {"prompt": [user("More")], "chosen": [assistant("Yes")], "rejected": [assistant("No")]}]
    path = tmp_path / "conv.parquet"
    pd.DataFrame(rows).to_parquet(path)
    df, issues = load_pairs({"path": str(path), "on_error": "drop"})
    assert df["prompt"].tolist() == [[user("Hi")], [user("More")]]
    assert df["chosen"].tolist() == [[assistant("Hello")], [assistant("Yes")]]
    assert [str(issue) for issue in issues] == [f"{path}, row 1, field 'chosen': empty (no message with content)"]


def test_csv_reader_names_records_by_their_first_line(tmp_path):
    path = tmp_path / "pairs.csv"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "prompt", "chosen", "rejected", "margin"])
        writer.writerow(["a", "Write a poem.", " Roses are red,\nviolets are blue.", " No.", "1.5"])  # lines 2-3
        writer.writerow(["", "", " fine", " worse", ""])  # line 4
        writer.writerow(["c", "Q", " ", " r", "x"])  # line 5
        handle.write("d,Q2, only chosen\n")  # line 6: a short record
        writer.writerow(["a", "Q3", " c", " r", "2"])  # line 7
    df, issues = load_pairs({"path": str(path), "on_error": "drop"})
    assert df["chosen"].tolist() == [" Roses are red,\nviolets are blue.", " fine"]
    assert df.loc[0, "margin"] == 1.5 and math.isnan(df.loc[1, "margin"])
    assert df.loc[0, "id"] == "a" and len(df.loc[1, "id"]) == 16
    assert [str(issue) for issue in issues] == [
        f"{path}, line 5, field 'chosen': empty",
        f"{path}, line 5, field 'margin': expected a number, got 'x'",
        f"{path}, line 6, field 'rejected': missing",
        f"{path}, line 7, field 'id': duplicate id 'a' (first at line 2)",
    ]


def test_hf_dataset_saved_with_save_to_disk(tmp_path):
    rows = [{"prompt": f"p{i}", "chosen": f" c{i}", "rejected": f" r{i}", "margin": float(i)} for i in range(5)]
    saved = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(saved))
    df, issues = load_pairs({"path": str(saved), "limit": 4, "source": "saved-set"})
    assert issues == [] and df["margin"].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert (df["source"] == "saved-set").all()

    splits = tmp_path / "splits"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:2]),
                          "test": datasets.Dataset.from_list(rows[2:])}).save_to_disk(str(splits))
    df, _ = load_pairs({"path": str(splits), "split": "test"})
    assert df["prompt"].tolist() == ["p2", "p3", "p4"]
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_pairs({"path": str(splits), "split": "validation"})


def test_hf_local_directory_of_json_files_goes_through_load_dataset(tmp_path):
    directory = tmp_path / "json_dir"
    directory.mkdir()
    write_jsonl(directory / "train.jsonl", [{"prompt": "a", "chosen": " x", "rejected": " y"}])
    write_jsonl(directory / "test.jsonl", [{"prompt": "b", "chosen": " x", "rejected": " x"},
                                           {"prompt": "c", "chosen": " x", "rejected": " y"}])
    cache = str(tmp_path / "cache")
    df, _ = load_pairs({"path": str(directory), "cache_dir": cache})
    assert df["prompt"].tolist() == ["a"]
    df, issues = load_pairs({"path": str(directory), "split": "test", "cache_dir": cache, "on_error": "drop"})
    assert df["prompt"].tolist() == ["c"]
    assert [str(issue) for issue in issues] == [f"{directory}:test, row 0, field 'rejected': identical to chosen"]
    # A hub id is resolved by the same call; a local directory stands in for the unreachable hub here.
    df, _ = load_pairs({"hub_id": str(directory), "split": "train", "cache_dir": cache})
    assert df["prompt"].tolist() == ["a"] and df.loc[0, "source"] == str(directory)


def test_json_array_file_is_read_through_the_json_builder(tmp_path):
    path = tmp_path / "pairs.json"
    path.write_text(json.dumps([{"prompt": "a", "chosen": " x", "rejected": " y"},
                                {"prompt": "b", "chosen": 3, "rejected": " y"}]))
    with pytest.raises(DataValidationError, match=f"{path}:train, row 1, field 'chosen': expected text"):
        load_pairs({"path": str(path), "cache_dir": str(tmp_path / "cache")})


def test_unreachable_hub_id_raises(tmp_path):
    with pytest.raises(ConnectionError):
        load_pairs({"hub_id": "rewardlab-test/does-not-exist", "cache_dir": str(tmp_path)})


def test_fail_mode_message_is_capped(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [{"prompt": "p", "chosen": "", "rejected": f" r{i}"}
                                               for i in range(MAX_LISTED_ISSUES + 5)])
    with pytest.raises(DataValidationError) as caught:
        load_pairs({"path": str(path)})
    assert f"{MAX_LISTED_ISSUES + 5} data problem(s) found (empty: {MAX_LISTED_ISSUES + 5})" in str(caught.value)
    assert str(caught.value).endswith("... and 5 more")
    assert caught.value.issues[0] == ValidationIssue(str(path), 1, "chosen", "empty", "empty", "line")


def test_unknown_spec_keys_are_ignored_with_a_warning_or_refused_when_strict(tmp_path, caplog):
    path = write_jsonl(tmp_path / "p.jsonl", [{"prompt": "p", "chosen": " a", "rejected": " b"}])
    df, _ = load_pairs({"path": str(path), "kind": "pairs", "optional": True})
    assert len(df) == 1
    assert "['kind', 'optional'] are not loading options" in caplog.text
    with pytest.raises(ValueError, match=r"unknown data spec key\(s\) \['colour'\]"):
        load_pairs({"path": str(path), "colour": "red"}, strict=True)


@pytest.mark.parametrize("spec, match", [
    ({"format": "pairs"}, "exactly one of 'path' and 'hub_id'"),
    ({"path": "x.jsonl", "hub_id": "a/b"}, "exactly one of 'path' and 'hub_id'"),
    ({"path": "x.jsonl", "format": "yaml"}, "unknown format"),
    ({"path": "x.jsonl", "on_error": "skip"}, "on_error"),
    ({"path": "x.jsonl", "limit": -1}, "limit"),
    ({"path": "x.jsonl", "subset": "a", "name": "b"}, "'subset' and 'name'"),
])
def test_bad_specs_are_refused(spec, match):
    with pytest.raises(ValueError, match=match):
        load_pairs(spec)


def test_missing_files_and_unknown_file_types_are_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_pairs({"path": str(tmp_path / "absent.jsonl")})
    (tmp_path / "data.txt").write_text("hello")
    with pytest.raises(ValueError, match="unsupported file type"):
        load_pairs({"path": str(tmp_path / "data.txt")})


def test_every_format_is_listed():
    assert set(FORMATS) == {"pairs", "trl_explicit", "trl_implicit", "hh_rlhf", "unified_feedback", "skywork"}
