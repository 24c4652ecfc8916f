"""Exported reward models: a standard AutoModelForSequenceClassification directory that transformers' pipeline, an
MLflow registry (real sqlite store) and TRL's GRPO trainer load as they are, scoring what RewardLab scores."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file
from tokenizers import ByteLevelBPETokenizer
from transformers import AutoModelForSequenceClassification, AutoTokenizer, PreTrainedTokenizerFast, pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from helpers_tiny import TINY_TEXTS, save_tiny_base, sqlite_tracking_store, tiny_pairs_df  # noqa: E402

from rewardlab.commands import commands  # noqa: E402
from rewardlab.datasets import PretrainedDataset  # noqa: E402
from rewardlab.encoding import encode_prompt_response, padded_batch  # noqa: E402
from rewardlab.export import ExportError, export_reward_model, final_evaluation, log_exported_model  # noqa: E402
from rewardlab.modeling import RewardEnsemble, RewardModel  # noqa: E402
from rewardlab.scoring import score_responses  # noqa: E402

HEAD_BIAS = 0.75
CHAT_TEMPLATE = "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}"
PROVENANCE = {"variant": "bt", "noise_rate": 0.25, "seed": 3, "training_data": "tiny pairs"}


def _with_lora(model: RewardModel) -> RewardModel:
    """LoRA adapters with non-zero weights, so that merging them changes the LM."""
    from peft import LoraConfig, get_peft_model

    model.lm = get_peft_model(model.lm, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]))
    torch.manual_seed(5)
    with torch.no_grad():
        for name, parameter in model.lm.named_parameters():
            if "lora_B" in name:
                parameter.normal_(std=0.5)
    return model


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A reward model with merged LoRA adapters and a head bias, saved as RewardLab saves it, and its export."""
    root = tmp_path_factory.mktemp("export")
    base, tokenizer = save_tiny_base(root / "base")
    tokenizer.chat_template = CHAT_TEMPLATE
    torch.manual_seed(2)
    model = _with_lora(RewardModel.from_base(base)).eval()
    with torch.no_grad():
        model.reward_head[1].bias.fill_(HEAD_BIAS)
    pairs = tiny_pairs_df(9)
    unmerged = score_responses(model, tokenizer, pairs["prompt"], pairs["chosen"], progress=False)
    model.save_pretrained(root / "reward_model", tokenizer=tokenizer)
    record = export_reward_model(root / "reward_model", root / "exported", reward_mean=0.5, reward_std=2.0,
                                 provenance=PROVENANCE, metrics={"eval_accuracy": 0.8125})
    reloaded = RewardModel.from_pretrained(root / "reward_model").eval()
    return {"root": root, "pairs": pairs, "unmerged": unmerged, "model": reloaded, "tokenizer": tokenizer,
            "record": record, "reward_dir": root / "reward_model", "exported": root / "exported"}


def test_the_directory_is_a_standard_sequence_classifier(trained):
    exported = trained["exported"]
    config = json.loads((exported / "config.json").read_text())
    assert config["architectures"] == ["LlamaForSequenceClassification"]
    assert config["id2label"] == {"0": "reward"} and config["pad_token_id"] == trained["tokenizer"].pad_token_id
    recorded = config["rewardlab"]
    assert recorded["head_bias"] == pytest.approx(HEAD_BIAS) and recorded["head_type"] == "linear"
    assert (recorded["reward_mean"], recorded["reward_std"], recorded["variant"]) == (0.5, 2.0, "bt")
    assert recorded["pad_token_added"] is False and recorded["tokenizer_adds_bos"] is True
    weights = load_file(str(exported / "model.safetensors"))
    head = trained["model"].reward_head[1]
    assert torch.equal(weights["score.weight"], head.weight.detach())
    assert "score.bias" not in weights and "lm_head.weight" not in weights
    assert AutoTokenizer.from_pretrained(exported).chat_template == CHAT_TEMPLATE
    card = (exported / "README.md").read_text()
    for text in ("| Variant | bt |", "| Label noise | 0.25 |", "| Training data | tiny pairs |",
                 f"| Base model | {trained['root'] / 'base'} |", "| eval_accuracy | 0.8125 |", "0.75"):
        assert text in card


def test_merged_lora_scores_as_the_model_that_was_trained(trained):
    model, tokenizer, pairs = trained["model"], trained["tokenizer"], trained["pairs"]
    merged = score_responses(model, tokenizer, pairs["prompt"], pairs["chosen"], progress=False)
    np.testing.assert_allclose(merged, trained["unmerged"], atol=1e-4)


@pytest.mark.parametrize("side", ["left", "right"])
def test_pipeline_and_automodel_give_rewardlab_rewards_minus_the_bias(trained, side):
    model, tokenizer, pairs = trained["model"], trained["tokenizer"], trained["pairs"]
    exported = str(trained["exported"])
    texts = [prompt + response for prompt, response in zip(pairs["prompt"], pairs["chosen"])]
    expected = score_responses(model, tokenizer, pairs["prompt"], pairs["chosen"], progress=False) - HEAD_BIAS

    exported_tokenizer = AutoTokenizer.from_pretrained(exported, padding_side=side)
    for text, prompt, response in zip(texts, pairs["prompt"], pairs["chosen"]):
        # The same token ids as RewardLab's encoder: BOS, then prompt and response.
        ids, _ = encode_prompt_response(tokenizer, prompt, response, max_length=512)
        assert exported_tokenizer(text)["input_ids"] == ids
    batch = exported_tokenizer(texts, padding=True, return_tensors="pt")
    pad = exported_tokenizer.pad_token_id
    assert (batch["input_ids"][:, 0 if side == "left" else -1] == pad).any()  # the batch really is padded
    classifier = AutoModelForSequenceClassification.from_pretrained(exported).eval()
    with torch.no_grad():
        logits = classifier(**batch).logits[:, 0].numpy()
    np.testing.assert_allclose(logits, expected, atol=1e-4)

    scorer = pipeline("text-classification", model=exported, tokenizer=exported_tokenizer)
    scores = [out["score"] for out in scorer(texts, batch_size=len(texts), function_to_apply="none")]
    np.testing.assert_allclose(scores, expected, atol=1e-4)


def _tokenizer_without_pad() -> PreTrainedTokenizerFast:
    trainer = ByteLevelBPETokenizer()
    trainer.train_from_iterator(TINY_TEXTS, vocab_size=300, min_frequency=1, special_tokens=["<s>", "</s>"],
                                show_progress=False)
    return PreTrainedTokenizerFast(tokenizer_object=trainer._tokenizer, bos_token="<s>", eos_token="</s>")


def test_a_pad_shared_with_eos_becomes_a_dedicated_pad(tmp_path):
    # RewardLab pads with EOS when there is no pad token; read at "the last token that is not the pad", texts that
    # end with EOS would be scored one token early.
    base, tokenizer = save_tiny_base(tmp_path / "base", tokenizer=_tokenizer_without_pad())
    assert tokenizer.pad_token_id is None
    torch.manual_seed(4)
    model = RewardModel.from_base(base).eval()
    model.save_pretrained(tmp_path / "reward_model", tokenizer=tokenizer)
    record = export_reward_model(tmp_path / "reward_model", tmp_path / "exported")
    texts = [text + "</s>" for text in TINY_TEXTS[:4]]
    expected = score_responses(model, tokenizer, [""] * len(texts), texts, progress=False) - record["head_bias"]

    exported = AutoTokenizer.from_pretrained(tmp_path / "exported")
    assert record["pad_token_added"] is True and exported.pad_token_id != exported.eos_token_id
    assert all(ids[-1] == exported.eos_token_id for ids in exported(texts)["input_ids"])
    classifier = AutoModelForSequenceClassification.from_pretrained(tmp_path / "exported").eval()
    assert classifier.config.pad_token_id == exported.pad_token_id == len(exported) - 1
    assert classifier.get_input_embeddings().weight.shape[0] == len(exported)
    for side in ("left", "right"):
        batch = exported(texts, padding=True, padding_side=side, return_tensors="pt")
        with torch.no_grad():
            np.testing.assert_allclose(classifier(**batch).logits[:, 0].numpy(), expected, atol=1e-4)


def test_an_mlp_head_and_an_ensemble_are_refused(tmp_path):
    base, tokenizer = save_tiny_base(tmp_path / "base")
    RewardModel.from_base(base, head="mlp").save_pretrained(tmp_path / "mlp", tokenizer=tokenizer)
    with pytest.raises(ExportError, match=r"reward head of type 'mlp'.*only a linear head"):
        export_reward_model(tmp_path / "mlp", tmp_path / "out_mlp")
    members = [RewardModel.from_base(base) for _ in range(2)]
    RewardEnsemble(members).save_pretrained(tmp_path / "ensemble", tokenizer=tokenizer)
    with pytest.raises(ExportError, match=r"reward ensemble .*Export a member"):
        export_reward_model(tmp_path / "ensemble", tmp_path / "out_ensemble")
    assert not (tmp_path / "out_mlp").exists() and not (tmp_path / "out_ensemble").exists()


def test_final_evaluation_is_the_last_evaluated_step():
    import pandas as pd

    history = pd.DataFrame({"step": [1, 2, 3], "loss": [0.7, 0.6, 0.5], "eval_reward_mean": [0.1, np.nan, 0.3],
                            "eval_reward_std": [1.0, np.nan, 1.5], "eval_accuracy": [0.5, np.nan, 0.75]})
    assert final_evaluation(history) == {"eval_reward_mean": 0.3, "eval_reward_std": 1.5, "eval_accuracy": 0.75}
    assert final_evaluation(history[["step", "loss"]]) == {}


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """A real sqlite tracking store and Model Registry for the module; each test registers its own names."""
    yield from sqlite_tracking_store(tmp_path_factory.mktemp("mlflow"), "export")


def test_logged_and_registered_model_loads_from_the_registry(trained, mlflow_store):
    import mlflow
    from mlflow.tracking import MlflowClient

    with mlflow.start_run() as run:
        info = log_exported_model(trained["exported"], registered_model_name="rewardlab-logged")
    assert info.registered_model_version == 1
    client = MlflowClient(mlflow_store)
    assert client.get_model_version("rewardlab-logged", "1").run_id == run.info.run_id
    assert info.model_id in [output.model_id for output in client.get_run(run.info.run_id).outputs.model_outputs]

    texts = TINY_TEXTS[:3]
    expected = score_responses(trained["model"], trained["tokenizer"], [""] * 3, texts, progress=False) - HEAD_BIAS
    loaded = mlflow.transformers.load_model("models:/rewardlab-logged/1")
    scores = [out["score"] for out in loaded(texts, function_to_apply="none")]
    np.testing.assert_allclose(scores, expected, atol=1e-4)
    predicted = mlflow.pyfunc.load_model("models:/rewardlab-logged/1").predict(texts)  # raw logits: no sigmoid
    np.testing.assert_allclose(predicted["score"].to_numpy(), expected, atol=1e-4)


def _saved(catalog_dir: Path, data) -> str:
    """`data` saved as the catalog saves `exported_reward_model`: a new version of a PretrainedDataset."""
    from kedro.io import Version

    dataset = PretrainedDataset(str(catalog_dir), kind="path", version=Version(None, None))
    dataset.save(data)
    return dataset.last_saved_path


def test_the_node_exports_or_says_why_and_the_hook_registers_only_exports(trained, mlflow_store, tmp_path):
    import mlflow
    import pandas as pd
    from kedro.io import DataCatalog, Version

    from rewardlab.hooks import MlflowExportHooks
    from rewardlab.pipelines.grm_train.nodes import export_trained_model

    history = pd.DataFrame({"step": [1, 2], "eval_reward_mean": [0.2, 0.4], "eval_reward_std": [1.0, 3.0]})
    train_pairs = pd.DataFrame({"source": ["pairs.parquet"] * 9})
    validation_pairs = pd.DataFrame({"source": ["pairs.parquet"] * 3})
    params = {"grm_train": {"variant": "bt", "noise_rate": 0.5}}
    off = export_trained_model(str(trained["reward_dir"]), history, train_pairs, validation_pairs,
                               {"grm_train": {"export": False}})
    assert os.listdir(_saved(tmp_path / "off", off)) == ["README.md"]

    dataset = PretrainedDataset(str(tmp_path / "exported"), kind="path", version=Version(None, None))
    hooks = MlflowExportHooks()
    hooks.after_catalog_created(DataCatalog({"exported_reward_model": dataset}))
    with mlflow.start_run():
        dataset.save(export_trained_model(str(trained["reward_dir"]), history, train_pairs, validation_pairs, params))
        hooks.after_dataset_saved("exported_reward_model")
    recorded = json.loads((Path(dataset.last_saved_path) / "config.json").read_text())["rewardlab"]
    assert (recorded["reward_mean"], recorded["reward_std"], recorded["noise_rate"]) == (0.4, 3.0, 0.5)
    assert recorded["training_data"] == ("pairs.parquet: 9 training pairs (50% of them with chosen and rejected "
                                         "swapped), 3 validation pairs")
    versions = mlflow.MlflowClient().search_model_versions("name='rewardlab-bt'")
    assert [int(version.version) for version in versions] == [1]


def test_export_command_reads_the_training_run_and_registers(trained, mlflow_store, tmp_path):
    import mlflow

    with mlflow.start_run() as run:
        mlflow.set_tags({"variant": "grm_sft", "noise_rate": "0.1", "seed": "7", "run_label": "grm_sft__x"})
        mlflow.log_metrics({"eval_reward_mean": 1.25, "eval_reward_std": 0.5, "eval_accuracy": 0.7})
    out = tmp_path / "exported"
    result = CliRunner().invoke(commands, ["export", str(trained["reward_dir"]), str(out), "--tracking-uri",
                                           mlflow_store, "--run-id", run.info.run_id])
    assert result.exit_code == 0, result.output
    assert "registered as models:/rewardlab-grm_sft/1" in result.output
    recorded = json.loads((out / "config.json").read_text())["rewardlab"]
    assert (recorded["variant"], recorded["noise_rate"], recorded["seed"]) == ("grm_sft", 0.1, 7)
    assert (recorded["reward_mean"], recorded["reward_std"]) == (1.25, 0.5)
    assert "| eval_accuracy | 0.7 |" in (out / "README.md").read_text()


def test_export_command_refuses_an_mlp_head_naming_it(tmp_path):
    base, tokenizer = save_tiny_base(tmp_path / "base")
    RewardModel.from_base(base, head="mlp").save_pretrained(tmp_path / "mlp", tokenizer=tokenizer)
    result = CliRunner().invoke(commands, ["export", str(tmp_path / "mlp"), str(tmp_path / "out")])
    assert result.exit_code == 1 and "reward head of type 'mlp'" in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # a message, no traceback


def test_python_m_rewardlab_export_is_the_export_command():
    import subprocess

    result = subprocess.run([sys.executable, "-m", "rewardlab", "export", "--help"], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0 and "Usage: rewardlab export [OPTIONS] REWARD_MODEL_DIR OUT_DIR" in result.stdout


def test_trl_grpo_trains_a_step_with_the_exported_reward_model(trained, tmp_path):
    """TRL reads the reward of `prompt + completion` tokenized without special tokens: prompts that start with the
    BOS token give the layout RewardLab trained on, and TRL's rewards equal RewardLab's minus the bias."""
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    policy, tokenizer = save_tiny_base(tmp_path / "policy", seed=1)
    seen: list[str] = []

    def record_texts(prompts, completions, **kwargs):
        seen.extend(prompt + completion for prompt, completion in zip(prompts, completions))
        return [0.0] * len(prompts)

    prompts = [tokenizer.bos_token + text[:40] for text in TINY_TEXTS[:2]]
    args = GRPOConfig(output_dir=str(tmp_path / "grpo"), max_steps=1, per_device_train_batch_size=4,
                      num_generations=2, max_completion_length=6, logging_steps=1, report_to="none",
                      save_strategy="no", bf16=False, use_cpu=True, seed=0)
    trainer = GRPOTrainer(model=str(policy), reward_funcs=[str(trained["exported"]), record_texts], args=args,
                          train_dataset=Dataset.from_dict({"prompt": prompts * 2}), processing_class=tokenizer)
    trainer.train()
    assert trainer.state.global_step == 1 and len(seen) == 4

    logged = next(entry for entry in trainer.state.log_history if "rewards/exported/mean" in entry)
    encoded = trained["tokenizer"](seen, add_special_tokens=False)["input_ids"]
    assert all(ids[0] == tokenizer.bos_token_id for ids in encoded)
    batch = padded_batch(encoded, trained["tokenizer"].pad_token_id)
    with torch.no_grad():
        ours = trained["model"](**batch).rewards.numpy() - HEAD_BIAS
    assert logged["rewards/exported/mean"] == pytest.approx(float(ours.mean()), abs=1e-4)
