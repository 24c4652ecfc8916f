"""A trained reward model as a standard Hugging Face `AutoModelForSequenceClassification` with one output, which
`transformers.pipeline("text-classification")`, TRL (`reward_funcs=<path>`) and MLflow's transformers flavor load.

- Backbone weights unchanged (LoRA is merged when RewardLab saves), config of the base LM's family with
  `num_labels=1`; the linear head's weight becomes the family's classification layer (`score` for Llama, Qwen,
  Gemma, Mistral, ...), which has no bias: the logit is the RewardLab reward minus the head's bias, recorded as
  `config.rewardlab.head_bias`.
- The tokenizer adds BOS itself (`add_special_tokens=True`), as RewardLab's encoder does, so `pipeline(text)` sees
  the token ids RewardLab scores.
- transformers reads the logit at the last token that is not the pad id, whatever the padding side, so a pad
  shared with EOS (or none) would move the read-out off a text ending in EOS: such a tokenizer gets a dedicated
  pad token (and the embedding matrix a zero row when it has no spare one).
- `config.rewardlab` and a model card (README.md) record the head, the training reward statistics, provenance.

An MLP head is not one linear layer and an ensemble is several models: both are refused, naming why.
"""

from __future__ import annotations

import json
import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from rewardlab.errors import ExpectedError

logger = logging.getLogger(__name__)

EXPORT_FORMAT_VERSION = 1
CONFIG_KEY = "rewardlab"
REWARD_LABEL = "reward"
PAD_TOKEN = "<|rewardlab_pad|>"
CARD_FILE = "README.md"
MLFLOW_MODEL_NAME = "exported_reward_model"
# The final evaluation's metrics that travel with an exported model (training history columns).
EVAL_METRICS = ("eval_accuracy", "eval_loss", "eval_margin_mean", "eval_reward_mean", "eval_reward_std")
# MLflow run tags (rewardlab.run_identity) that say which run trained the model.
PROVENANCE_TAGS = ("variant", "noise_rate", "seed", "run_label")


class ExportError(ExpectedError, ValueError):
    """The directory cannot become a standard sequence-classification model; the message says why."""


def export_problem(reward_model_dir: str | Path) -> str | None:
    """Why `reward_model_dir` cannot be exported as one linear `score` layer, or None when it can."""
    from rewardlab.modeling import ENSEMBLE_CONFIG_FILE, REWARD_CONFIG_FILE

    directory = Path(reward_model_dir)
    if (directory / ENSEMBLE_CONFIG_FILE).exists():
        return (f"{directory} holds a reward ensemble (several reward models whose rewards are combined): "
                "a sequence-classification model is one backbone with one linear head. Export a member "
                "(member_00, ...) on its own instead")
    if not (directory / REWARD_CONFIG_FILE).exists():
        return f"{directory} holds no {REWARD_CONFIG_FILE}: not a saved reward model directory"
    head_type = json.loads((directory / REWARD_CONFIG_FILE).read_text()).get("head_type")
    if head_type != "linear":
        return (f"{directory} has a reward head of type {head_type!r} (Linear(h, 1024) -> ReLU -> Linear(1024, 1) "
                "for 'mlp'): only a linear head is one linear `score` layer of a sequence-classification model")
    if (directory / "adapter_config.json").exists():
        return f"{directory} holds unmerged adapters (adapter_config.json): save the reward model with them merged"
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING

    try:
        config = AutoConfig.from_pretrained(str(directory))
    except (OSError, ValueError):  # e.g. a family with remote code: the export itself says what fails
        return None
    if type(config) not in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING:
        return f"transformers has no sequence-classification model for its family ({config.model_type!r})"
    return None


def final_evaluation(history) -> dict[str, float]:
    """The last evaluation on the validation pairs in a training history (one row per optimizer step): its
    `eval_*` metrics, {} when the run had no validation pairs. `eval_reward_mean` / `eval_reward_std` are the
    RewardLab rewards (head bias included) of the chosen and rejected responses together, at the end of training."""
    if history is None or "eval_reward_mean" not in getattr(history, "columns", ()):
        return {}
    evaluated = history[history["eval_reward_mean"].notna()]
    if "member" in evaluated.columns:
        evaluated = evaluated[evaluated["member"] == evaluated["member"].min()]
    if evaluated.empty:
        return {}
    last = evaluated.sort_values("step").iloc[-1]
    return {key: float(last[key]) for key in EVAL_METRICS if key in last.index and math.isfinite(float(last[key]))}


def export_reward_model(reward_model_dir: str | Path, out_dir: str | Path, *, reward_mean: float | None = None,
                        reward_std: float | None = None, provenance: dict[str, Any] | None = None,
                        metrics: dict[str, float] | None = None, trust_remote_code: bool = False) -> dict[str, Any]:
    """Write `reward_model_dir` (a RewardModel.save_pretrained directory) to `out_dir` (absent or empty) as a
    standard `AutoModelForSequenceClassification` directory; returns what `config.rewardlab` records.

    `reward_mean` / `reward_std`: the RewardLab rewards' statistics in training (e.g. `final_evaluation`), recorded
    as given. `provenance`: variant, noise_rate, seed, run_label, training_data (any subset). `metrics`: numbers
    for the model card. Raises ExportError for an MLP head, an ensemble or a model family transformers has no
    sequence-classification class for.
    """
    from safetensors.torch import load_file

    from rewardlab.modeling import REWARD_CONFIG_FILE, REWARD_HEAD_FILE

    source, target = Path(reward_model_dir), Path(out_dir)
    problem = export_problem(source)
    if problem:
        raise ExportError(f"Cannot export {source}: {problem}.")
    if target.exists() and any(target.iterdir()):
        raise ExportError(f"Cannot export to {target}: the directory exists and is not empty.")
    started = time.perf_counter()
    reward_config = json.loads((source / REWARD_CONFIG_FILE).read_text())
    head = load_file(str(source / REWARD_HEAD_FILE))  # Sequential(Dropout, Linear): keys 1.weight, 1.bias
    weight, bias = head["1.weight"], float(head["1.bias"].reshape(-1)[0])
    model, head_name = _sequence_classifier(source, weight, trust_remote_code)
    tokenizer, pad_added = _tokenizer_with_bos_and_pad(source, model)
    text_config = model.config.get_text_config()
    record = {
        "format_version": EXPORT_FORMAT_VERSION,
        "head_type": reward_config["head_type"],
        "head_bias": bias,
        "logit": "RewardLab reward minus head_bias",
        "score_layer": head_name,
        "reward_mean": reward_mean,
        "reward_std": reward_std,
        "base_model": reward_config.get("base_model") or None,
        "pad_token_added": pad_added,
        "tokenizer_adds_bos": _adds_bos(tokenizer),
        "dtype": str(model.dtype).removeprefix("torch."),
        **{key: value for key, value in (provenance or {}).items() if value is not None},
    }
    model.config.pad_token_id = text_config.pad_token_id = tokenizer.pad_token_id
    model.config.id2label, model.config.label2id = {0: REWARD_LABEL}, {REWARD_LABEL: 0}
    setattr(model.config, CONFIG_KEY, record)
    target.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(target))
    tokenizer.save_pretrained(str(target))
    (target / CARD_FILE).write_text(model_card(record, type(model).__name__, tokenizer, metrics or {}))
    logger.info("Exported %s as %s (%.2fs)", source, type(model).__name__, time.perf_counter() - started)
    return record


@contextmanager
def _quiet_transformers():
    """transformers prints a load report for the head it initialises and the LM head it drops: both expected."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)


def _sequence_classifier(source: Path, weight, trust_remote_code: bool):
    """The backbone loaded into its family's sequence-classification class, the reward head's weight in its
    classification layer; and that layer's name. Only the layer may be new: a missing backbone weight is an error."""
    import torch
    from transformers import AutoModelForSequenceClassification

    try:
        with _quiet_transformers():
            model, info = AutoModelForSequenceClassification.from_pretrained(
                str(source), num_labels=1, dtype="auto", trust_remote_code=trust_remote_code, output_loading_info=True)
    except ValueError as error:  # "Unrecognized configuration class ..."
        raise ExportError(f"Cannot export {source}: transformers has no sequence-classification model for this "
                          f"family ({error}).") from None
    missing = sorted(info["missing_keys"])
    if len(missing) != 1 or not missing[0].endswith(".weight") or info["mismatched_keys"]:
        raise ExportError(f"Cannot export {source}: {type(model).__name__} expects a bias-free one-layer head, "
                          f"but loading left {missing} new and {sorted(info['mismatched_keys'])} mismatched.")
    head_name = missing[0].removesuffix(".weight")
    layer = model.get_submodule(head_name)
    if tuple(layer.weight.shape) != tuple(weight.shape):
        raise ExportError(f"Cannot export {source}: the reward head is {tuple(weight.shape)} but {head_name} is "
                          f"{tuple(layer.weight.shape)}.")
    with torch.no_grad():
        layer.weight.copy_(weight.to(layer.weight.dtype))
    return model.eval(), head_name


def _eos_ids(model, tokenizer) -> set[int]:
    ids = {tokenizer.eos_token_id}
    for config in (model.config.get_text_config(), getattr(model, "generation_config", None)):
        value = getattr(config, "eos_token_id", None)
        ids |= set(value) if isinstance(value, (list, tuple)) else {value}
    return {int(i) for i in ids if i is not None}


def _tokenizer_with_bos_and_pad(source: Path, model):
    """The reward model's tokenizer, adding BOS on `add_special_tokens=True` and with a pad no text ends with."""
    import torch
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source))
    if tokenizer.bos_token_id is not None and not _adds_bos(tokenizer):
        if hasattr(tokenizer, "add_bos_token"):
            tokenizer.add_bos_token = True  # RewardLab's encoder puts BOS before every prompt (rewardlab.encoding)
        if not _adds_bos(tokenizer):
            logger.warning("The exported tokenizer (%s) does not add BOS itself: texts must start with %s",
                           type(tokenizer).__name__, tokenizer.bos_token)
    pad = tokenizer.pad_token_id
    if pad is not None and pad not in _eos_ids(model, tokenizer) and pad != tokenizer.unk_token_id:
        return tokenizer, False
    tokenizer.add_special_tokens({"pad_token": PAD_TOKEN})
    embeddings = model.get_input_embeddings()
    if tokenizer.pad_token_id >= embeddings.weight.shape[0]:
        rows = embeddings.weight.shape[0]
        model.resize_token_embeddings(tokenizer.pad_token_id + 1, mean_resizing=False)
        with torch.no_grad():  # never attended to (masked, or after the last real token): zeros, deterministic
            model.get_input_embeddings().weight[rows:].zero_()
    return tokenizer, True


def _adds_bos(tokenizer) -> bool:
    ids = tokenizer("a", add_special_tokens=True)["input_ids"]
    return tokenizer.bos_token_id is not None and bool(ids) and ids[0] == tokenizer.bos_token_id


def _number(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def model_card(record: dict[str, Any], architecture: str, tokenizer, metrics: dict[str, float]) -> str:
    """The exported model's README.md: what it was trained from and on, and how its logit relates to RewardLab."""
    rows = [("Architecture", f"`{architecture}`, one output (`num_labels=1`, label `{REWARD_LABEL}`)"),
            ("Base model", record.get("base_model") or "unknown"),
            ("Training data", record.get("training_data") or "unknown"),
            ("Variant", record.get("variant") or "unknown"),
            ("Label noise", record.get("noise_rate", "unknown")),
            ("Seed", record.get("seed", "unknown")),
            ("Run", record.get("run_label") or "unknown"),
            ("Reward head", f"{record['head_type']}; its bias {record['head_bias']:.6g} is not in the logit"),
            ("Training reward mean / std",
             f"{_number(record.get('reward_mean'))} / {_number(record.get('reward_std'))}")]
    table = "\n".join(f"| {key} | {_number(value)} |" for key, value in rows)
    metric_rows = "\n".join(f"| {key} | {_number(value)} |" for key, value in sorted(metrics.items()))
    bias = record["head_bias"]
    pad_note = (f"`{tokenizer.pad_token}` (id {tokenizer.pad_token_id}) was added for the export"
                if record["pad_token_added"] else f"`{tokenizer.pad_token}` (id {tokenizer.pad_token_id})")
    if tokenizer.bos_token is None:
        bos_note = "Input layout as trained: the prompt, then the response (the tokenizer has no BOS token)."
    elif not record["tokenizer_adds_bos"]:
        bos_note = (f"Input layout as trained: BOS, then the prompt and the response. This tokenizer does not add "
                    f"the BOS itself:\n  start every text with `{tokenizer.bos_token}`.")
    else:
        bos_note = ("Input layout as trained: BOS, then the prompt and the response. The tokenizer adds the BOS "
                    "(`add_special_tokens=True`, as pipelines do).\n  Text that already starts with it (from a chat "
                    "template that writes it) goes in with `add_special_tokens=False`; so does TRL's GRPOTrainer:\n  "
                    f"there, plain-text prompts should start with the BOS token (`{tokenizer.bos_token}`).")
    return f"""---
library_name: transformers
pipeline_tag: text-classification
tags:
- reward-model
- rewardlab
---

# RewardLab reward model{f": {record['variant']}" if record.get("variant") else ""}

A reward model trained with RewardLab and exported as a standard sequence-classification model: its single
logit scores a whole text, prompt followed by response. Higher is better.

| | |
|---|---|
{table}

## Metrics

| metric | value |
|---|---|
{metric_rows or "| (none recorded) | |"}

## Use

```python
from transformers import pipeline

reward = pipeline("text-classification", model="<this directory>", function_to_apply="none")
reward(["Human: How do I bake bread?\\n\\nAssistant: Mix flour, water, yeast and salt."])[0]["score"]
```

## What the logit is

- logit = RewardLab reward - {bias:.6g} (the head's bias, `config.rewardlab.head_bias`): differences between
  responses, and so rankings, pairwise preferences and best-of-n choices, are the same as in RewardLab.
- Normalised as in training: (logit + head_bias - reward_mean) / reward_std (`config.rewardlab`).
- {bos_note}
- Padding, left or right: the logit is read at the last token that is not the pad token, {pad_note}; no text
  ends with it.
- Weights in {record["dtype"]}; RewardLab computes its head in float32, so below float32 the logit matches its
  reward to that precision.
"""


def is_exported_model(directory: str | Path) -> bool:
    """Whether `directory` holds an exported model (and not only the README of a refusal)."""
    return (Path(directory) / "config.json").is_file()


class RewardModelExport:
    """An export to be written where a dataset saves it (`save_pretrained(directory)`); with `skip_reason`, the
    directory holds only a README.md saying why there is no model."""

    def __init__(self, reward_model_dir: str | Path, skip_reason: str | None = None, **export_args: Any):
        self.reward_model_dir, self.skip_reason, self.export_args = Path(reward_model_dir), skip_reason, export_args

    def save_pretrained(self, directory: str | Path) -> None:
        if self.skip_reason:
            Path(directory).mkdir(parents=True, exist_ok=True)
            (Path(directory) / CARD_FILE).write_text(f"# Not exported\n\n{self.skip_reason}\n")
        else:
            export_reward_model(self.reward_model_dir, directory, **self.export_args)


def default_registered_name(exported_dir: str | Path) -> str:
    """`rewardlab-<variant>` from the exported config (`rewardlab-reward-model` when the variant is unknown)."""
    record = json.loads((Path(exported_dir) / "config.json").read_text()).get(CONFIG_KEY, {})
    return f"rewardlab-{record.get('variant') or 'reward-model'}"


def log_exported_model(exported_dir: str | Path, registered_model_name: str | None = None,
                       tags: dict[str, str] | None = None):
    """Log an exported directory to the active MLflow run with the transformers flavor (task text-classification,
    raw logits from pyfunc), and register it under `registered_model_name` when given. No hub calls: the model
    card is the directory's README.md. Returns MLflow's ModelInfo (`registered_model_version` when registered)."""
    import mlflow
    import transformers
    from huggingface_hub import ModelCard

    directory = Path(exported_dir).resolve()
    card = ModelCard.load(directory / CARD_FILE) if (directory / CARD_FILE).exists() else None
    # A loaded pipeline, not the directory's path: MLflow 3.17 fails on a path with transformers 5 (it expects a
    # pipeline class where transformers 5 names it by string).
    with _quiet_transformers():
        scorer = transformers.pipeline("text-classification", model=str(directory), dtype="auto")
    return mlflow.transformers.log_model(
        transformers_model=scorer, name=MLFLOW_MODEL_NAME, task="text-classification", model_card=card,
        model_config={"function_to_apply": "none"}, registered_model_name=registered_model_name, tags=tags or None,
        pip_requirements=_serving_requirements())


def _serving_requirements() -> list[str]:
    """What loading the model needs, pinned as installed. Given explicitly: MLflow would otherwise load the model
    again in a subprocess to infer them, and its defaults ask for torchvision, which the model does not use."""
    from importlib.metadata import version

    # A local build label (torch's "+cpu") is not installable from PyPI.
    return [f"{name}=={version(name).split('+')[0]}" for name in ("transformers", "tokenizers", "safetensors", "torch")]


def _run_details(tracking_uri: str, run_id: str) -> tuple[dict[str, Any], dict[str, float]]:
    """Provenance from an MLflow run's tags and the final evaluation from its latest metric values."""
    from mlflow.tracking import MlflowClient

    run = MlflowClient(tracking_uri=tracking_uri).get_run(run_id)
    provenance: dict[str, Any] = {key: run.data.tags[key] for key in PROVENANCE_TAGS if key in run.data.tags}
    for key, kind in (("noise_rate", float), ("seed", int)):
        if key in provenance:
            provenance[key] = kind(provenance[key])
    return provenance, {key: run.data.metrics[key] for key in EVAL_METRICS if key in run.data.metrics}


@click.command(name="export")
@click.argument("reward_model_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--tracking-uri", help="Also log the exported model to this MLflow store (e.g. sqlite:///mlflow.db).")
@click.option("--run-id", help="Log into this existing MLflow run (e.g. the training run); variant, noise, seed "
                               "and the final evaluation are read from it.")
@click.option("--experiment", default="rewardlab", show_default=True,
              help="Without --run-id: the experiment of the new run the model is logged in.")
@click.option("--registered-model-name", help="Model Registry name (default: rewardlab-<variant>).")
@click.option("--reward-mean", type=float, help="Training reward mean to record (default: from --run-id).")
@click.option("--reward-std", type=float, help="Training reward std to record (default: from --run-id).")
@click.option("--variant", help="Variant to record (default: from --run-id).")
@click.option("--noise-rate", type=float, help="Label noise rate to record (default: from --run-id).")
@click.option("--seed", type=int, help="Training seed to record (default: from --run-id).")
def export_command(reward_model_dir: Path, out_dir: Path, tracking_uri: str | None, run_id: str | None,
                   experiment: str, registered_model_name: str | None, reward_mean: float | None,
                   reward_std: float | None, variant: str | None, noise_rate: float | None,
                   seed: int | None) -> None:
    """Export a saved reward model (REWARD_MODEL_DIR, e.g. a version under data/06_models/reward_model) to OUT_DIR
    as a standard Hugging Face AutoModelForSequenceClassification, optionally logged and registered in MLflow."""
    if run_id and not tracking_uri:
        raise click.UsageError("--run-id needs --tracking-uri (the store that holds the run).")
    provenance, metrics = _run_details(tracking_uri, run_id) if run_id else ({}, {})
    provenance |= {key: value for key, value in (("variant", variant), ("noise_rate", noise_rate),
                                                 ("seed", seed)) if value is not None}
    try:
        export_reward_model(reward_model_dir, out_dir, provenance=provenance, metrics=metrics,
                            reward_mean=reward_mean if reward_mean is not None else metrics.get("eval_reward_mean"),
                            reward_std=reward_std if reward_std is not None else metrics.get("eval_reward_std"))
    except ExportError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Exported {reward_model_dir} to {out_dir}")
    if not tracking_uri:
        return
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    if not run_id:
        mlflow.set_experiment(experiment)
    name = registered_model_name or default_registered_name(out_dir)
    with mlflow.start_run(run_id=run_id) as run:
        info = log_exported_model(out_dir, registered_model_name=name)
    click.echo(f"Logged to MLflow run {run.info.run_id} as {info.model_uri}; registered as "
               f"models:/{name}/{info.registered_model_version}")
