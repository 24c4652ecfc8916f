"""Pair schema: normalization, every validation problem (with file/row/field), both on_error modes, rendering."""

import math

import numpy as np
import pandas as pd
import pytest

from rewardlab.schema import (
    ISSUE_KINDS,
    PAIR_COLUMNS,
    DataValidationError,
    ValidationIssue,
    pair_texts,
    render_messages,
    stable_pair_id,
    summarize_issues,
    validate_pairs,
    validate_records,
)


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def plain_rows(n):
    return [{"prompt": f"Question {i}?", "chosen": f" good answer {i}", "rejected": f" bad answer {i}"}
            for i in range(n)]


def issue_lines(issues):
    return [str(issue) for issue in issues]


# ------------------------------------------------------------------------------------------ valid data


def test_plain_table_gets_schema_columns_stable_ids_nan_margin_and_source():
    df = pd.DataFrame(plain_rows(3) + [{"prompt": "", "chosen": "yes", "rejected": "no"}])
    clean, issues = validate_pairs(df, source="unit")
    assert issues == []
    assert list(clean.columns) == PAIR_COLUMNS
    assert clean["id"].is_unique
    assert clean["margin"].isna().all() and clean["margin"].dtype == np.float64
    assert (clean["source"] == "unit").all()
    assert clean.loc[3, "prompt"] == ""  # an empty prompt is allowed
    assert isinstance(clean["chosen"].iloc[0], str)
    # Ids come from content only: the same rows give the same ids, in any table.
    again, _ = validate_pairs(df.iloc[::-1].reset_index(drop=True), source="other")
    assert set(again["id"]) == set(clean["id"])
    assert clean.loc[0, "id"] == stable_pair_id("Question 0?", " good answer 0", " bad answer 0")


def test_given_ids_margins_and_sources_are_kept_and_numeric_ids_become_strings():
    rows = plain_rows(3)
    rows[0].update(id="a", margin=2.5, source="mine")
    rows[1].update(id=7, margin="1.5")
    rows[2].update(id=None, margin=None, source="")
    clean, issues = validate_records(rows, source="default")
    assert issues == []
    assert clean["id"].tolist()[:2] == ["a", "7"]
    assert clean.loc[2, "id"] == stable_pair_id("Question 2?", " good answer 2", " bad answer 2")
    assert clean["margin"].tolist()[:2] == [2.5, 1.5] and math.isnan(clean.loc[2, "margin"])
    assert clean["source"].tolist() == ["mine", "default", "default"]


def test_source_defaults_to_the_file_name():
    clean, _ = validate_records(plain_rows(1), file="data/x.jsonl")
    assert clean.loc[0, "source"] == "data/x.jsonl"


def test_conversational_rows_keep_message_lists_and_drop_extra_message_keys():
    rows = [{
        "prompt": [{"role": "system", "content": "Be brief."}, user("Hi?")],
        "chosen": [{"role": "assistant", "content": "Hello.", "name": None}],
        "rejected": [assistant("Go away.")],
    }, {
        "prompt": np.array([user("Again?")], dtype=object),  # as pandas/parquet hand nested values back
        "chosen": np.array([assistant("Sure.")], dtype=object),
        "rejected": [assistant("No.")],
    }]
    clean, issues = validate_pairs(pd.DataFrame(rows))
    assert issues == []
    assert isinstance(clean["chosen"].iloc[0], list)
    assert clean.loc[0, "chosen"] == [assistant("Hello.")]
    assert clean.loc[1, "prompt"] == [user("Again?")]
    assert isinstance(clean.loc[1, "chosen"], list)
    assert clean["prompt"].dtype == object


def test_pandas_string_dtype_columns_are_accepted():
    df = pd.DataFrame(plain_rows(2)).astype("str")
    clean, _ = validate_pairs(df)
    assert clean["chosen"].tolist() == [" good answer 0", " good answer 1"]


def test_empty_table_gives_an_empty_schema_table():
    clean, issues = validate_pairs(pd.DataFrame(columns=["prompt", "chosen", "rejected"]))
    assert issues == [] and len(clean) == 0 and list(clean.columns) == PAIR_COLUMNS


# ------------------------------------------------------------------------------------ every problem


def bad_rows():
    """One valid row (0) and one row per problem kind, with the exact message expected for it."""
    return [
        ({"prompt": "ok", "chosen": " fine", "rejected": " worse"}, None),
        ({"prompt": "p1", "rejected": " r"}, ("missing", "chosen", "missing")),
        ({"prompt": "p2", "chosen": None, "rejected": " r"}, ("missing", "chosen", "missing (null)")),
        ({"prompt": "p3", "chosen": "   \n", "rejected": " r"}, ("empty", "chosen", "empty")),
        ({"prompt": "p4", "chosen": " c", "rejected": ""}, ("empty", "rejected", "empty")),
        ({"prompt": "p5", "chosen": 42, "rejected": " r"},
         ("not_text", "chosen", "expected text or a list of messages, got int")),
        ({"prompt": {"text": "p6"}, "chosen": " c", "rejected": " r"},
         ("not_text", "prompt", "expected text or a list of messages, got dict with keys ['text']")),
        ({"prompt": "p7", "chosen": " same", "rejected": " same"}, ("identical", "rejected", "identical to chosen")),
        ({"prompt": "ok", "chosen": " fine", "rejected": " worse"},
         ("duplicate_pair", "prompt+chosen+rejected", "duplicate of {loc[0]}")),
        ({"id": "x", "prompt": "p9", "chosen": " c", "rejected": " r"}, None),
        ({"id": "x", "prompt": "p10", "chosen": " c", "rejected": " r"},
         ("duplicate_id", "id", "duplicate id 'x' (first at {loc[9]})")),
        ({"prompt": "p11", "chosen": " c", "rejected": " r", "margin": "big"},
         ("not_number", "margin", "expected a number, got 'big'")),
        ({"prompt": "p12", "chosen": " c", "rejected": " r", "margin": True},
         ("not_number", "margin", "expected a number, got bool")),
        ({"prompt": "p13", "chosen": " c", "rejected": " r", "id": {"k": 1}},
         ("not_text", "id", "expected a string id, got dict with keys ['k']")),
        ({"prompt": "p14", "chosen": " c", "rejected": " r", "source": 3},
         ("not_text", "source", "expected text, got int")),
        ({"prompt": [user("p15")], "chosen": " c", "rejected": " r"},
         ("mixed_format", "prompt", "conversational value with plain chosen")),
        ({"prompt": [user("p16")], "chosen": [assistant("c")], "rejected": [assistant("r")]},
         ("mixed_format", "chosen", "conversational row in a plain table (first valid row is plain)")),
    ]


BAD_ROW_INDICES = [i for i, (_, case) in enumerate(bad_rows()) if case]


@pytest.mark.parametrize("index", BAD_ROW_INDICES)
def test_each_problem_is_reported_with_file_line_and_field(index):
    cases = bad_rows()
    kind, field, problem = cases[index][1]
    # As read from a JSONL file: record i sits on line i + 1.
    lines = [f"line {i + 1}" for i in range(len(cases))]
    _, issues = validate_records([row for row, _ in cases], "data/x.jsonl", "drop",
                                 locations=range(1, len(cases) + 1), unit="line")
    at_line = [issue for issue in issues if issue.row == index + 1]
    expected_problem = problem.format(loc=lines)
    assert at_line == [ValidationIssue("data/x.jsonl", index + 1, field, expected_problem, kind, "line")]
    assert str(at_line[0]) == f"data/x.jsonl, line {index + 1}, field '{field}': {expected_problem}"


def test_drop_mode_keeps_exactly_the_valid_rows_and_counts_every_kind():
    cases = bad_rows()
    clean, issues = validate_records([row for row, _ in cases], on_error="drop")
    rows = [f"row {i}" for i in range(len(cases))]
    expected = [(i, kind, field, problem.format(loc=rows)) for i, (_, case) in enumerate(cases) if case
                for kind, field, problem in [case]]
    assert [(issue.row, issue.kind, issue.field, issue.problem) for issue in issues] == expected
    assert clean["prompt"].tolist() == ["ok", "p9"]
    counts = summarize_issues(issues)
    assert counts == {"not_text": 4, "missing": 2, "empty": 2, "not_number": 2, "mixed_format": 2,
                      "identical": 1, "duplicate_pair": 1, "duplicate_id": 1}
    assert set(counts) <= set(ISSUE_KINDS)
    # The same rows as a DataFrame: a key absent from one record becomes a null cell, still "missing".
    clean_df, df_issues = validate_pairs(pd.DataFrame([row for row, _ in cases]), on_error="drop")
    assert [(i.row, i.kind, i.field) for i in df_issues] == [(i.row, i.kind, i.field) for i in issues]
    assert df_issues[0].problem == "missing (null)"
    assert clean_df.equals(clean)


def test_in_memory_rows_are_named_by_zero_based_index():
    rows = plain_rows(3)
    rows[2]["chosen"] = ""
    with pytest.raises(DataValidationError) as caught:
        validate_pairs(pd.DataFrame(rows), file="<memory>")
    assert "<memory>, row 2, field 'chosen': empty" in str(caught.value)


def test_a_column_absent_from_the_table_is_missing_in_every_row():
    df = pd.DataFrame(plain_rows(2)).drop(columns="rejected")
    clean, issues = validate_pairs(df, on_error="drop")
    assert len(clean) == 0
    assert issue_lines(issues) == ["<memory>, row 0, field 'rejected': missing",
                                   "<memory>, row 1, field 'rejected': missing"]


def test_all_problems_of_one_row_are_reported():
    _, issues = validate_records([{"prompt": 1.5, "chosen": "", "rejected": None}], on_error="drop")
    assert [(issue.field, issue.kind) for issue in issues] == [
        ("prompt", "not_text"), ("chosen", "empty"), ("rejected", "missing")]


@pytest.mark.parametrize("row, field, kind, problem", [
    ({"prompt": [user("q")], "chosen": [], "rejected": [assistant("r")]}, "chosen", "empty",
     "empty (no message with content)"),
    ({"prompt": [user("q")], "chosen": [assistant(" ")], "rejected": [assistant("r")]}, "chosen", "empty",
     "empty (no message with content)"),
    ({"prompt": [user("q")], "chosen": [{"role": "assistant"}], "rejected": [assistant("r")]}, "chosen",
     "not_text", "message 0 is not a {'role': str, 'content': str} mapping (got dict with keys ['role'])"),
    ({"prompt": [{"content": "q"}], "chosen": [assistant("c")], "rejected": [assistant("r")]}, "prompt",
     "not_text", "message 0 is not a {'role': str, 'content': str} mapping (got dict with keys ['content'])"),
    ({"prompt": [user("q")], "chosen": [assistant("c")], "rejected": [assistant("r"), "text"]}, "rejected",
     "not_text", "message 1 is not a {'role': str, 'content': str} mapping (got str)"),
    ({"prompt": [user("q")], "chosen": [{"role": "assistant", "content": 5}], "rejected": [assistant("r")]},
     "chosen", "not_text", "message 0 is not a {'role': str, 'content': str} mapping (got dict with keys "
                           "['content', 'role'])"),
    ({"prompt": [user("q")], "chosen": [assistant("c"), user("more")], "rejected": [assistant("r")]}, "chosen",
     "bad_role", "message 1 has role 'user' (responses hold assistant messages only)"),
    ({"prompt": [user("q")], "chosen": [assistant("c")], "rejected": [user("r"), {"role": "system", "content": "s"},
                                                                      user("t")]},
     "rejected", "no_assistant_turn", "no assistant turn (roles: user, system)"),
    ({"prompt": [user("q")], "chosen": [assistant("c")], "rejected": [assistant("c")]}, "rejected", "identical",
     "identical to chosen"),
    ({"prompt": [user("q")], "chosen": [assistant("c")], "rejected": " r"}, "rejected", "mixed_format",
     "plain value with conversational chosen"),
])
def test_conversational_problems(row, field, kind, problem):
    _, issues = validate_records([row], "hub/ds:train", "drop")
    assert issues == [ValidationIssue("hub/ds:train", 0, field, problem, kind, "row")]


def test_fail_mode_lists_the_first_twenty_problems_and_the_total():
    rows = plain_rows(40)
    for i in range(0, 40, 4):  # 10 rows with an empty chosen
        rows[i]["chosen"] = ""
    for i in range(1, 40, 2):  # 20 rows with a text margin
        rows[i]["margin"] = "n/a"
    with pytest.raises(DataValidationError) as caught:
        validate_records(rows, "data/big.jsonl", locations=range(1, 41), unit="line")
    message = str(caught.value)
    assert message.splitlines()[0] == "30 data problem(s) found (not_number: 20, empty: 10)"
    listed = [line for line in message.splitlines() if line.startswith("  data/big.jsonl, line ")]
    assert len(listed) == 20
    assert listed[0] == "  data/big.jsonl, line 1, field 'chosen': empty"
    assert listed[1] == "  data/big.jsonl, line 2, field 'margin': expected a number, got 'n/a'"
    assert message.splitlines()[-1] == "  ... and 10 more"
    assert len(caught.value.issues) == 30
    assert isinstance(caught.value, ValueError)


def test_fail_mode_returns_clean_data_when_there_is_nothing_wrong():
    clean, issues = validate_pairs(pd.DataFrame(plain_rows(5)), on_error="fail")
    assert len(clean) == 5 and issues == []


def test_unknown_on_error_mode_is_refused():
    with pytest.raises(ValueError, match="on_error"):
        validate_pairs(pd.DataFrame(plain_rows(1)), on_error="ignore")


# --------------------------------------------------------------------------------------------- rendering


def test_render_messages_without_a_template_uses_human_assistant_turns():
    messages = [{"role": "system", "content": "Be kind."}, user("Hi"), assistant("Hello"), user("Bye")]
    assert render_messages(messages) == "\n\nSystem: Be kind.\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Bye"
    assert render_messages(messages[1:2], add_generation_prompt=True) == "\n\nHuman: Hi\n\nAssistant:"


def test_pair_texts_plain_rows_are_returned_unchanged():
    assert pair_texts("\n\nHuman: Hi\n\nAssistant:", " Hello") == ("\n\nHuman: Hi\n\nAssistant:", " Hello")


def test_pair_texts_conversational_rows_concatenate_to_the_rendered_conversation():
    prompt = [user("Hi"), assistant("Hello"), user("Name a colour")]
    response = [assistant("Blue.")]
    prompt_text, response_text = pair_texts(prompt, response)
    assert prompt_text == "\n\nHuman: Hi\n\nAssistant: Hello\n\nHuman: Name a colour\n\nAssistant:"
    assert response_text == " Blue."
    assert prompt_text + response_text == render_messages(prompt + response)


def tokenizer_with_chat_template():
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.WordLevel({"[UNK]": 0, "[PAD]": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]")
    tokenizer.chat_template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}<|end|>{% endfor %}"
                               "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    return tokenizer


def test_render_and_pair_texts_use_the_tokenizer_chat_template():
    tokenizer = tokenizer_with_chat_template()
    prompt, response = [user("Hi")], [assistant("Hello")]
    assert render_messages(prompt, tokenizer) == "<|user|>Hi<|end|>"
    prompt_text, response_text = pair_texts(prompt, response, tokenizer)
    assert prompt_text == "<|user|>Hi<|end|><|assistant|>"
    assert response_text == "Hello<|end|>"


def test_pair_texts_refuses_mixed_rows():
    with pytest.raises(ValueError, match="both be text or both message lists"):
        pair_texts("text prompt", [assistant("x")])


def test_validation_is_idempotent_and_survives_a_pandas_parquet_round_trip(tmp_path):
    rows = [{"prompt": [user(f"q{i}")], "chosen": [assistant(f"c{i}")], "rejected": [assistant(f"r{i}")],
             "margin": float(i)} for i in range(3)]
    clean, _ = validate_records(rows, source="conv")
    again, issues = validate_pairs(clean)
    assert issues == [] and again.equals(clean)
    clean.to_parquet(tmp_path / "pairs.parquet")
    reread, issues = validate_pairs(pd.read_parquet(tmp_path / "pairs.parquet"))  # nested values as numpy arrays
    assert issues == [] and reread.equals(clean)
