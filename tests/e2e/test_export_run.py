"""The default DAG leaves the trained reward model as a standard Hugging Face model: a versioned
`exported_reward_model` directory, logged to the run and registered in the project's MLflow Model Registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

REGISTERED_NAME = "rewardlab-grm_sft"  # rewardlab-<variant>, the default variant


def _latest(path: Path) -> Path:
    versions = sorted(p for p in path.iterdir() if not p.name.startswith("."))
    assert versions, f"no versions under {path}"
    return versions[-1] / path.name


@pytest.fixture(scope="module")
def project(tiny_project, tmp_path_factory) -> Path:
    """A copy of the project after the default DAG, so that reading its MLflow store changes nothing shared."""
    copy = tmp_path_factory.mktemp("exported") / "project"
    shutil.copytree(tiny_project, copy)
    return copy


def test_the_latest_export_loads_as_a_sequence_classifier_scoring_like_rewardlab(project):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

    from rewardlab.modeling import RewardModel
    from rewardlab.scoring import score_responses

    exported = _latest(project / "data" / "06_models" / "exported_reward_model")
    classifier = AutoModelForSequenceClassification.from_pretrained(exported)
    assert type(classifier).__name__ == "LlamaForSequenceClassification" and classifier.config.num_labels == 1
    recorded = json.loads((exported / "config.json").read_text())["rewardlab"]
    assert (recorded["variant"], recorded["noise_rate"], recorded["seed"]) == ("grm_sft", 0.25, 0)
    assert np.isfinite(recorded["reward_mean"]) and recorded["reward_std"] > 0  # the final evaluation's
    assert "| Variant | grm_sft |" in (exported / "README.md").read_text()

    reward_dir = _latest(project / "data" / "06_models" / "reward_model")
    model, tokenizer = RewardModel.from_pretrained(reward_dir).eval(), AutoTokenizer.from_pretrained(reward_dir)
    texts = ["the first answer", "a second, somewhat longer answer to score"]
    expected = score_responses(model, tokenizer, [""] * 2, texts, progress=False) - recorded["head_bias"]
    scorer = pipeline("text-classification", model=str(exported))
    scores = [out["score"] for out in scorer(texts, batch_size=2, function_to_apply="none")]
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def test_the_registry_holds_the_model_linked_to_the_run(project):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(tracking_uri=uri)
    (run,) = client.search_runs([client.get_experiment_by_name("rewardlab").experiment_id])
    version = client.get_model_version(REGISTERED_NAME, "1")
    assert version.run_id == run.info.run_id
    logged = client.get_logged_model(version.source.removeprefix("models:/"))  # the version's model_id is unset
    assert logged.source_run_id == run.info.run_id
    assert logged.model_id in [output.model_id for output in run.outputs.model_outputs]

    mlflow.set_tracking_uri(uri)
    try:
        scorer = mlflow.transformers.load_model(f"models:/{REGISTERED_NAME}/1")
    finally:
        mlflow.set_tracking_uri(None)
    assert type(scorer.model).__name__ == "LlamaForSequenceClassification"
    assert np.isfinite(scorer(["an answer"], function_to_apply="none")[0]["score"])
