"""`rewardlab.scorer.load_scorer` on every model source, and `rewardlab score` on files, in process and as a
real `python -m rewardlab score` subprocess."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from helpers_tiny import build_tiny_tokenizer, save_tiny_base, tiny_pairs_df
from transformers import LlamaForSequenceClassification

from rewardlab.commands import commands
from rewardlab.modeling import RewardEnsemble, RewardModel, load_reward_model
from rewardlab.scorer import ModelSourceError, load_scorer
from rewardlab.scoring import score_pairs, score_responses

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HEAD_BIAS = 0.25
CHAT_TEMPLATE = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")
MESSAGES_PROMPT = [{"role": "user", "content": "How do I bake bread?"}]
MESSAGES_RESPONSE = [{"role": "assistant", "content": "Mix flour, water and yeast."}]


def save_reward_models(directory: Path) -> dict[str, Path]:
    """A reward model (head bias 0.25), the same model exported as a LlamaForSequenceClassification (bias
    recorded as `rewardlab.head_bias`) and a two-member ensemble, with a tokenizer that has a chat template."""
    tokenizer = build_tiny_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    base, _ = save_tiny_base(directory / "base", tokenizer=tokenizer)
    torch.manual_seed(3)
    model = RewardModel.from_base(base)
    with torch.no_grad():
        model.reward_head[1].bias.fill_(HEAD_BIAS)
    model.save_pretrained(directory / "reward_model", tokenizer=tokenizer)

    config = copy.deepcopy(model.lm.config)
    config.num_labels, config.architectures = 1, ["LlamaForSequenceClassification"]
    config.rewardlab = {"head_bias": HEAD_BIAS}
    exported = LlamaForSequenceClassification(config)
    exported.model.load_state_dict(model.lm.model.state_dict())
    with torch.no_grad():
        exported.score.weight.copy_(model.reward_head[1].weight)
    exported.save_pretrained(directory / "exported")
    tokenizer.save_pretrained(directory / "exported")

    torch.manual_seed(4)
    RewardEnsemble([model, RewardModel.from_base(base)], reduce="mean").save_pretrained(directory / "ensemble",
                                                                                       tokenizer=tokenizer)
    return {"reward_model": directory / "reward_model", "exported": directory / "exported",
            "ensemble": directory / "ensemble", "tokenizer": tokenizer}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return save_reward_models(tmp_path_factory.mktemp("reward_models"))


@pytest.fixture(scope="module")
def scorer(models):
    return load_scorer(models["reward_model"], batch_size=4, device="cpu")


def response_rows():
    pairs = tiny_pairs_df(6)
    rows = [{"id": i, "prompt": prompt, "response": response, "note": f"n{i}"}
            for i, (prompt, response) in enumerate(zip(pairs["prompt"], pairs["chosen"]))]
    rows.append({"id": 6, "prompt": MESSAGES_PROMPT, "response": MESSAGES_RESPONSE, "note": "chat"})
    return rows


def test_every_directory_kind_scores_as_the_project_scores(models, scorer):
    pairs = tiny_pairs_df(8)
    # A text ending with the pad token: transformers' own read-out would skip that token.
    prompts = list(pairs["prompt"]) + ["Human: hi", MESSAGES_PROMPT]
    responses = list(pairs["chosen"]) + [" hello" + models["tokenizer"].pad_token, MESSAGES_RESPONSE]
    project = load_reward_model(models["reward_model"]).eval()
    expected = score_responses(project, models["tokenizer"], prompts, responses, progress=False)
    np.testing.assert_allclose(scorer.score(prompts, responses), expected, atol=1e-5)

    exported = load_scorer(models["exported"], batch_size=3, device="cpu")
    assert (scorer.kind, exported.kind) == ("reward model", "exported model")
    # The exported logit lacks the head's bias; the scorer adds the recorded bias back.
    np.testing.assert_allclose(exported.score(prompts, responses), expected, atol=1e-5)
    tokenizer = models["tokenizer"]
    ids = [tokenizer.bos_token_id] + tokenizer("Human: hi hello", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        raw_logit = float(exported.model.classifier(input_ids=torch.tensor([ids])).logits[0, 0])
    assert abs(raw_logit + HEAD_BIAS - exported.score_texts(["Human: hi hello"])[0]) < 1e-5

    chosen, rejected = exported.score_pairs(pairs["prompt"], pairs["chosen"], pairs["rejected"])
    table = score_pairs(project, models["tokenizer"], pairs, progress=False)
    np.testing.assert_allclose(chosen, table["reward_chosen"], atol=1e-5)
    np.testing.assert_allclose(rejected, table["reward_rejected"], atol=1e-5)

    ensemble = load_scorer(models["ensemble"], device="cpu")
    members = load_reward_model(models["ensemble"]).members
    by_member = [score_responses(m.eval(), models["tokenizer"], prompts, responses, progress=False) for m in members]
    assert ensemble.kind == "reward ensemble"
    np.testing.assert_allclose(ensemble.score(prompts, responses), np.mean(by_member, axis=0), atol=1e-5)
    np.testing.assert_allclose(by_member[0], expected, atol=1e-5)


def test_mlflow_registered_model_and_run_artifact(models, scorer, tmp_path):
    import mlflow
    import mlflow.transformers
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = mlflow.MlflowClient(tracking_uri=store, registry_uri=store)
    experiment = client.create_experiment("scoring", artifact_location=str(tmp_path / "artifacts"))
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    mlflow.set_tracking_uri(store)
    mlflow.set_registry_uri(store)
    try:
        with mlflow.start_run(experiment_id=experiment) as run:
            components = {"model": AutoModelForSequenceClassification.from_pretrained(str(models["exported"])),
                          "tokenizer": AutoTokenizer.from_pretrained(str(models["exported"]))}
            mlflow.transformers.log_model(components, name="reward", task="text-classification",
                                          registered_model_name="tiny-rm", pip_requirements=["transformers"])
            mlflow.log_artifacts(str(models["reward_model"]), artifact_path="reward_model")
    finally:
        mlflow.set_tracking_uri(previous[0])
        mlflow.set_registry_uri(previous[1])

    texts = ["Human: What is the capital of France? Assistant: Paris.", "Human: hi Assistant: hello"]
    expected = scorer.score_texts(texts)
    registered = load_scorer("models:/tiny-rm/1", tracking_uri=store, device="cpu")
    assert registered.kind == "MLflow transformers model from MLflow"
    np.testing.assert_allclose(registered.score_texts(texts), expected, atol=1e-5)
    logged = load_scorer(f"runs:/{run.info.run_id}/reward_model", tracking_uri=store, device="cpu")
    assert logged.kind == "reward model from MLflow"
    np.testing.assert_allclose(logged.score_texts(texts), expected, atol=1e-5)
    with pytest.raises(ModelSourceError, match="models:/tiny-rm/7: cannot download"):
        load_scorer("models:/tiny-rm/7", tracking_uri=store)


def test_sources_that_hold_no_reward_model_are_refused(models, tmp_path):
    with pytest.raises(ModelSourceError, match="no such directory"):
        load_scorer(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSourceError, match="holds no reward model"):
        load_scorer(tmp_path / "empty")
    two_labels = tmp_path / "two_labels"
    two_labels.mkdir()
    config = json.loads((models["exported"] / "config.json").read_text())
    config["id2label"] = {"0": "bad", "1": "good"}
    (two_labels / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelSourceError, match="2 labels; a reward model has one"):
        load_scorer(two_labels)


def test_versioned_dataset_directory_uses_its_newest_version(models, scorer, tmp_path):
    versioned = tmp_path / "reward_model"
    for version, source in (("2026-01-01T00.00.00.000Z", "ensemble"), ("2026-02-01T00.00.00.000Z", "reward_model")):
        (versioned / version).mkdir(parents=True)
        os.symlink(models[source], versioned / version / "reward_model")
    newest = load_scorer(versioned, device="cpu")
    assert newest.kind == "reward model"
    np.testing.assert_allclose(newest.score_texts(["Human: hi"]), scorer.score_texts(["Human: hi"]), atol=1e-6)


def invoke(*args: str):
    return CliRunner().invoke(commands, ["score", *map(str, args)], catch_exceptions=False)


def test_score_responses_jsonl_keeps_rows_and_adds_reward(models, scorer, tmp_path):
    rows = response_rows()
    source = tmp_path / "responses.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = invoke(source, tmp_path / "scored.jsonl", "--model", models["reward_model"], "--batch-size", 3)
    assert result.exit_code == 0, result.output
    scored = [json.loads(line) for line in (tmp_path / "scored.jsonl").read_text().splitlines()]
    assert [{k: v for k, v in row.items() if k != "reward"} for row in scored] == rows
    expected = scorer.score([row["prompt"] for row in rows], [row["response"] for row in rows])
    np.testing.assert_allclose([row["reward"] for row in scored], expected, atol=1e-6)
    assert "Scored 7 row(s)" in result.output


@pytest.mark.parametrize("suffix, fmt", [(".parquet", "auto"), (".jsonl", "hh_rlhf")])
def test_score_pairs_in_any_adapter_format(models, scorer, tmp_path, suffix, fmt):
    if fmt == "hh_rlhf":
        rows = [{"chosen": f"\n\nHuman: Question {i}?\n\nAssistant: A careful answer {i}.",
                 "rejected": f"\n\nHuman: Question {i}?\n\nAssistant: No" + "!" * i} for i in range(4)]
        source = tmp_path / f"pairs{suffix}"
        source.write_text("".join(json.dumps(row) + "\n" for row in rows))
        from rewardlab.adapters import load_pairs
        loaded, _ = load_pairs({"path": str(source), "format": "hh_rlhf"})
    else:
        rows = [{"id": f"p{i}", "prompt": MESSAGES_PROMPT, "chosen": MESSAGES_RESPONSE,
                 "rejected": [{"role": "assistant", "content": "No." * (i + 1)}]} for i in range(3)]
        source = tmp_path / f"pairs{suffix}"
        pd.DataFrame(rows).to_parquet(source)
        loaded = pd.DataFrame(rows)
    output = tmp_path / "scored.csv"
    result = invoke(source, output, "--model", models["exported"], "--format", fmt)
    assert result.exit_code == 0, result.output
    scored = pd.read_csv(output)
    assert len(scored) == len(rows) and list(scored.columns) == [*rows[0], "reward_chosen", "reward_rejected"]
    if fmt != "hh_rlhf":
        assert json.loads(scored["chosen"][0]) == MESSAGES_RESPONSE  # messages go into CSV cells as JSON
    chosen, rejected = scorer.score_pairs(loaded["prompt"], loaded["chosen"], loaded["rejected"])
    np.testing.assert_allclose(scored["reward_chosen"], chosen, atol=1e-5)
    np.testing.assert_allclose(scored["reward_rejected"], rejected, atol=1e-5)


BAD_JSONL = (json.dumps({"prompt": "Human: hi", "response": " fine"}) + "\n"
             + "{not json\n"
             + json.dumps({"prompt": "Human: hi"}) + "\n"
             + json.dumps({"prompt": "Human: hi", "response": 3}) + "\n"
             + json.dumps({"prompt": MESSAGES_PROMPT, "response": " plain"}) + "\n")


@pytest.mark.parametrize("case, expected", [
    ("bad_rows", ["4 data problem(s)", "in.jsonl, line 2, field '<line>': not valid JSON",
                  "in.jsonl, line 3, field 'response': missing", "line 4, field 'response': expected text",
                  "line 5, field 'response': plain response with a conversational prompt", "Nothing written."]),
    ("bad_pairs", ["in.jsonl, line 1, field 'chosen': missing", "line 2, field 'rejected': identical to chosen"]),
    ("no_rows", ["no rows to score"]),
    ("output_suffix", ["unsupported output type '.txt'"]),
    ("unknown_format", ["--format", "'pairz'"]),
    ("missing_input", ["absent.jsonl: no such file"]),
    ("no_model", ["nowhere: no such directory"]),
])
def test_bad_input_is_refused_and_nothing_is_written(models, tmp_path, case, expected):
    source, output, extra = tmp_path / "in.jsonl", tmp_path / "out.jsonl", []
    source.write_text({
        "bad_rows": BAD_JSONL,
        "bad_pairs": json.dumps({"prompt": "p", "rejected": "r"}) + "\n"
                     + json.dumps({"prompt": "p", "chosen": "same", "rejected": "same"}) + "\n",
        "no_rows": "\n",
    }.get(case, json.dumps({"prompt": "Human: hi", "response": " fine"}) + "\n"))
    model = models["reward_model"]
    if case == "output_suffix":
        output = tmp_path / "out.txt"
    elif case == "unknown_format":
        extra = ["--format", "pairz"]
    elif case == "missing_input":
        source = tmp_path / "absent.jsonl"
    elif case == "no_model":
        model = tmp_path / "nowhere"
    result = invoke(source, output, "--model", model, *extra)
    assert result.exit_code != 0
    for fragment in expected:
        assert fragment in result.output, result.output
    assert sorted(path.name for path in tmp_path.iterdir()) == ["in.jsonl"]


def test_score_as_a_subprocess(models, scorer, tmp_path):
    rows = response_rows()[:-1]
    source, output = tmp_path / "responses.csv", tmp_path / "scored.parquet"
    pd.DataFrame(rows).to_csv(source, index=False)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    completed = subprocess.run([sys.executable, "-m", "rewardlab", "score", str(source), str(output), "--model",
                                str(models["reward_model"]), "--device", "cpu"], cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "scoring responses" in completed.stderr  # the progress bar
    scored = pd.read_parquet(output)
    assert list(scored.columns) == ["id", "prompt", "response", "note", "reward"]
    # CSV cells are text: the id column comes back as strings, the prompts as written.
    assert list(scored["prompt"]) == [row["prompt"] for row in rows]
    expected = scorer.score([row["prompt"] for row in rows], [row["response"] for row in rows])
    np.testing.assert_allclose(scored["reward"], expected, atol=1e-6)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(BAD_JSONL)
    refused = subprocess.run([sys.executable, "-m", "rewardlab", "score", str(bad), str(tmp_path / "o.jsonl"),
                              "--model", str(models["reward_model"])], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=300)
    assert refused.returncode == 1 and "bad.jsonl, line 2, field '<line>'" in refused.stderr
    assert not (tmp_path / "o.jsonl").exists()
