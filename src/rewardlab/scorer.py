"""One way to score with any trained reward model, whatever form it was saved in.

`load_scorer(source)` accepts:

- a reward model or reward ensemble directory written by `RewardModel.save_pretrained` /
  `RewardEnsemble.save_pretrained` (or a versioned Kedro dataset directory holding such directories: the
  newest version is used);
- an exported `AutoModelForSequenceClassification` directory (one label; the reward head's bias, which the
  standard head has no place for, recorded under `rewardlab.head_bias` in its config.json and added back);
- an MLflow URI: `models:/<name>/<version>` (a registered model logged with the transformers flavor, or
  registering one of the directories above) or `runs:/<run_id>/<path>` (e.g. the `reward_model` artifact
  every training run logs).

Every kind is encoded by `rewardlab.encoding` (chat template applied when the tokenizer has one) and scored
by `rewardlab.scoring.score_encoded` (batched, longest first), so an exported model gives the same rewards as
the reward model it came from.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rewardlab.errors import ExpectedError
from rewardlab.schema import (EMPTY, MIXED_FORMAT, DataValidationError, RowProblem, ValidationIssue,
                              text_field)

logger = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 32
DEFAULT_MAX_LENGTH = 512
EXPORT_CONFIG_KEY = "rewardlab"  # config.json entry of an exported model
EXPORT_BIAS_KEY = "head_bias"
MLFLOW_SCHEMES = ("models:/", "runs:/")
NO_TOKEN_ID = -1


class ModelSourceError(ExpectedError, ValueError):
    """The model source names nothing that can be loaded as a reward model."""


class TooLongError(ValueError):
    """An item does not fit in max_length tokens (its prompt or a response would be cut)."""

    def __init__(self, index: int, max_length: int):
        super().__init__(f"item {index} does not fit in {max_length} tokens")
        self.index, self.max_length = index, max_length


# ------------------------------------------------------------------------------------------ input rows


def _is_blank(value: Any) -> bool:
    return not value.strip() if isinstance(value, str) else not any(m["content"].strip() for m in value)


def response_rows(records: Sequence[Mapping], label: str, locations: Sequence[int] | None = None,
                  unit: str = "row", prior_issues: Sequence[ValidationIssue] = ()) -> tuple[list, list]:
    """(prompts, responses) of (prompt, response) rows, plain text or chat messages; every defect found (with
    ``prior_issues``, e.g. undecodable file lines) raises one DataValidationError naming label, row and field.

    An empty response is scored (a policy may produce one); a row with nothing at all to score is refused.
    """
    locations = list(range(len(records))) if locations is None else list(locations)
    issues, prompts, responses = list(prior_issues), [], []
    for location, record in zip(locations, records):
        kinds, values, problems = {}, {}, []
        for field in ("prompt", "response"):
            try:
                kinds[field], values[field] = text_field(record, field, allow_empty=True)
            except RowProblem as problem:
                problems.append(problem)
        if not problems and kinds["prompt"] != kinds["response"]:
            problems.append(RowProblem("response", MIXED_FORMAT,
                                       f"{kinds['response']} response with a {kinds['prompt']} prompt"))
        if not problems and _is_blank(values["prompt"]) and _is_blank(values["response"]):
            problems.append(RowProblem("response", EMPTY, "empty, and so is the prompt: nothing to score"))
        issues.extend(problem.at(label, location, unit) for problem in problems)
        prompts.append(values.get("prompt"))
        responses.append(values.get("response"))
    if issues:
        raise DataValidationError.from_issues(sorted(issues, key=lambda issue: issue.row))
    return prompts, responses


# ---------------------------------------------------------------------------------------------- scorer


class Scorer:
    """A loaded reward model and its tokenizer. Thread-safe: one scoring call runs at a time."""

    def __init__(self, model, tokenizer, source: str, kind: str, batch_size: int = DEFAULT_BATCH_SIZE,
                 max_length: int = DEFAULT_MAX_LENGTH, min_response_tokens: int | None = None):
        from rewardlab.encoding import DEFAULT_MIN_RESPONSE_TOKENS

        if batch_size < 1 or max_length < 1:
            raise ValueError(f"batch_size and max_length must be at least 1, got {batch_size} and {max_length}")
        self.model, self.tokenizer, self.source, self.kind = model.eval(), tokenizer, source, kind
        self.batch_size, self.max_length = batch_size, max_length
        self.min_response_tokens = min_response_tokens or DEFAULT_MIN_RESPONSE_TOKENS
        # Fast tokenizers refuse concurrent use ("Already borrowed") and a model's forward is not meant to be
        # shared between threads.
        self._lock = threading.Lock()

    def describe(self) -> dict[str, Any]:
        return {"model": self.source, "kind": self.kind, "max_length": self.max_length}

    def _rewards(self, sequences, desc: str, progress: bool) -> np.ndarray:
        from rewardlab.encoding import pad_id
        from rewardlab.scoring import score_encoded

        rewards, _ = score_encoded(self.model, sequences, pad_id(self.tokenizer), self.batch_size, progress, desc)
        return rewards

    def _refuse_cut(self, truncations) -> None:
        cut = next((index for index, truncation in enumerate(truncations) if truncation.any), None)
        if cut is not None:
            raise TooLongError(cut, self.max_length)

    def score(self, prompts: Sequence, responses: Sequence, progress: bool = False,
              refuse_cut: bool = False) -> np.ndarray:
        """Reward of each (prompt, response), plain text or chat messages, in input order. Sequences longer
        than max_length are cut as `rewardlab.encoding` says, or refused (TooLongError) with `refuse_cut`."""
        from rewardlab.encoding import encode_responses

        with self._lock:
            encoded = encode_responses(self.tokenizer, prompts, responses, self.max_length,
                                       min_response_tokens=self.min_response_tokens)
            if refuse_cut:
                self._refuse_cut([e.truncation for e in encoded])
            return self._rewards([e.input_ids for e in encoded], "scoring responses", progress)

    def score_texts(self, texts: Sequence[str], progress: bool = False, refuse_cut: bool = False) -> np.ndarray:
        """Reward of each whole text (prompt and response already joined, e.g. by a chat template), read as one
        sequence: BOS unless the text starts with it, then the text; a cut keeps the text's end."""
        return self.score(list(texts), [""] * len(texts), progress, refuse_cut)

    def score_pairs(self, prompts: Sequence, chosen: Sequence, rejected: Sequence, progress: bool = False,
                    refuse_cut: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(reward_chosen, reward_rejected) per pair, a pair's two sequences sharing one prompt cut."""
        from rewardlab.encoding import encode_pairs

        with self._lock:
            encoded = encode_pairs(self.tokenizer, prompts, chosen, rejected, self.max_length,
                                   min_response_tokens=self.min_response_tokens)
            if refuse_cut:
                self._refuse_cut([pair.truncation for pair in encoded])
            sequences = [pair.chosen_ids for pair in encoded] + [pair.rejected_ids for pair in encoded]
            rewards = self._rewards(sequences, "scoring pairs", progress)
        return rewards[:len(encoded)], rewards[len(encoded):]

    def score_frame(self, pairs, progress: bool = False, refuse_cut: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """`score_pairs` of a pair table (prompt, chosen, rejected columns, as `rewardlab.adapters` loads)."""
        return self.score_pairs(pairs["prompt"], pairs["chosen"], pairs["rejected"], progress, refuse_cut)


# ----------------------------------------------------------------------------------- exported models


def _sequence_classifier_reward(model, offset: float):
    """An AutoModelForSequenceClassification with one label, called as `rewardlab.scoring` calls a RewardModel.

    Its own pooling reads the rightmost token that is not the pad id: wrong for a text that ends with that
    token. Rows are therefore re-laid left-padded (the last position is then each row's last real token),
    positions are numbered from each row's first real token (what the project's models see with right
    padding), and for the call the pad id is one no token has, so the pooling reads the last position.
    """
    import inspect

    import torch
    from torch import nn

    from rewardlab.modeling import RewardOutput

    text_config = model.config.get_text_config()
    takes_positions = "position_ids" in inspect.signature(model.forward).parameters

    class SequenceClassifierReward(nn.Module):
        def __init__(self):
            super().__init__()
            self.classifier = model
            self.offset = float(offset)

        def forward(self, input_ids, attention_mask=None, **_) -> RewardOutput:
            if attention_mask is None:
                attention_mask = torch.ones_like(input_ids)
            if not takes_positions:  # left padding would shift its positions: the model's own reading
                logits = self.classifier(input_ids=input_ids, attention_mask=attention_mask).logits
            else:
                width = input_ids.shape[1]
                shift = width - attention_mask.sum(dim=-1, keepdim=True)
                source = (torch.arange(width, device=input_ids.device).unsqueeze(0) - shift) % width
                mask = attention_mask.gather(1, source)
                saved_pad = text_config.pad_token_id
                text_config.pad_token_id = NO_TOKEN_ID
                try:
                    logits = self.classifier(input_ids=input_ids.gather(1, source), attention_mask=mask,
                                             position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits
                finally:
                    text_config.pad_token_id = saved_pad
            rewards = logits[:, 0].float() + self.offset
            return RewardOutput(rewards=rewards, last_hidden=rewards.new_zeros((rewards.shape[0], 1)))

    return SequenceClassifierReward()


def _export_config(directory: Path) -> dict | None:
    """config.json of a sequence-classification model directory, else None."""
    path = directory / "config.json"
    if not path.is_file():
        return None
    config = json.loads(path.read_text())
    if not any(str(name).endswith("ForSequenceClassification") for name in config.get("architectures") or ()):
        return None
    return config


def _head_bias(config: Any) -> float:
    """The reward head's bias recorded by the export (0 when none was recorded)."""
    entry = config.get(EXPORT_CONFIG_KEY) if isinstance(config, dict) else getattr(config, EXPORT_CONFIG_KEY, None)
    return float((entry or {}).get(EXPORT_BIAS_KEY, 0.0))


def _check_one_label(num_labels: int, where: str) -> None:
    if num_labels != 1:
        raise ModelSourceError(f"{where}: a sequence classifier with {num_labels} labels; a reward model has one")


def _load_exported(directory: Path, load_args: dict):
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    _check_one_label(AutoConfig.from_pretrained(str(directory)).num_labels, str(directory))
    model = AutoModelForSequenceClassification.from_pretrained(str(directory), **load_args)
    return model, AutoTokenizer.from_pretrained(str(directory)), _head_bias(_export_config(directory))


def _load_mlflow_transformers(directory: Path, load_args: dict):
    import mlflow.transformers

    from rewardlab.modeling import resolve_dtype

    components = mlflow.transformers.load_model(str(directory), return_type="components")
    model, tokenizer = components["model"], components.get("tokenizer")
    if load_args.get("dtype") not in (None, "auto"):
        model = model.to(resolve_dtype(load_args["dtype"]))
    if tokenizer is None:
        raise ModelSourceError(f"{directory}: the logged model has no tokenizer")
    if not type(model).__name__.endswith("ForSequenceClassification"):
        raise ModelSourceError(f"{directory}: the logged model is a {type(model).__name__}, not a sequence "
                               "classifier")
    _check_one_label(model.config.num_labels, str(directory))
    return model, tokenizer, _head_bias(model.config)


# -------------------------------------------------------------------------------------------- sources


def _newest_version(directory: Path) -> Path | None:
    """<directory>/<newest version>/<name> of a versioned Kedro dataset, else None (versions sort by time)."""
    versions = sorted(child for child in directory.iterdir() if (child / directory.name).is_dir())
    return versions[-1] / directory.name if versions else None


def _is_mlflow_model(directory: Path) -> bool:
    return (directory / "MLmodel").is_file()


def _load_directory(directory: Path, load_args: dict) -> tuple[Any, Any, str]:
    """(model, tokenizer, kind) of a local directory, whichever reward model form it holds."""
    from transformers import AutoTokenizer

    from rewardlab.modeling import ENSEMBLE_CONFIG_FILE, REWARD_CONFIG_FILE, load_reward_model

    if not directory.is_dir():
        raise ModelSourceError(f"{directory}: no such directory (a model source is a reward model directory, an "
                               f"exported model directory, or an MLflow URI: {', '.join(MLFLOW_SCHEMES)})")
    if (directory / ENSEMBLE_CONFIG_FILE).is_file() or (directory / REWARD_CONFIG_FILE).is_file():
        kind = "reward ensemble" if (directory / ENSEMBLE_CONFIG_FILE).is_file() else "reward model"
        if not (directory / "tokenizer_config.json").is_file():
            raise ModelSourceError(f"{directory}: the {kind} was saved without its tokenizer")
        return load_reward_model(directory, **load_args), AutoTokenizer.from_pretrained(str(directory)), kind
    if _export_config(directory) is not None:
        model, tokenizer, bias = _load_exported(directory, load_args)
        return _sequence_classifier_reward(model, bias), tokenizer, "exported model"
    if _is_mlflow_model(directory):
        model, tokenizer, bias = _load_mlflow_transformers(directory, load_args)
        return _sequence_classifier_reward(model, bias), tokenizer, "MLflow transformers model"
    newest = _newest_version(directory)
    if newest is not None:
        logger.info("%s is a versioned dataset; using its newest version, %s", directory, newest.parent.name)
        return _load_directory(newest, load_args)
    raise ModelSourceError(f"{directory}: holds no reward model ({REWARD_CONFIG_FILE} or {ENSEMBLE_CONFIG_FILE}), "
                           "no exported sequence classifier (config.json) and no MLflow model (MLmodel)")


def default_tracking_uri() -> str | None:
    """MLFLOW_TRACKING_URI, else the project's sqlite store when run from the project root, else MLflow's own."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    store = Path("mlflow.db")
    return f"sqlite:///{store.resolve()}" if store.is_file() else None


def _load_mlflow(uri: str, tracking_uri: str | None, load_args: dict) -> tuple[Any, Any, str]:
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    tracking_uri = tracking_uri or default_tracking_uri()
    previous = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    with tempfile.TemporaryDirectory(prefix="rewardlab-model-") as download:
        try:
            if tracking_uri:
                # models:/ URIs are resolved in the process-wide registry, whatever download_artifacts is told.
                mlflow.set_tracking_uri(tracking_uri)
                mlflow.set_registry_uri(tracking_uri)
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=download))
        except MlflowException as error:
            raise ModelSourceError(f"{uri}: cannot download from MLflow ({tracking_uri or 'default store'}): "
                                   f"{error.message}") from error
        finally:
            mlflow.set_tracking_uri(previous[0])
            mlflow.set_registry_uri(previous[1])
        # A registered transformers model downloads as its MLflow model directory; a logged directory as itself.
        model, tokenizer, kind = _load_directory(local, load_args)
    return model, tokenizer, f"{kind} from MLflow"


def load_scorer(source: str | os.PathLike, *, batch_size: int = DEFAULT_BATCH_SIZE,
                max_length: int = DEFAULT_MAX_LENGTH, device: str = "auto", dtype: str | None = None,
                tracking_uri: str | None = None, min_response_tokens: int | None = None) -> Scorer:
    """A Scorer for a reward model directory, an exported model directory or an MLflow URI (see the module
    docstring). `dtype` as `rewardlab.modeling.lm_load_args` reads it (None: as saved); `device` "auto" is
    the GPU when there is one. Raises ModelSourceError when the source holds no reward model."""
    import torch

    from rewardlab.modeling import lm_load_args

    load_args = lm_load_args({"dtype": dtype}, "--dtype")
    text = str(source)
    if text.startswith(MLFLOW_SCHEMES):
        model, tokenizer, kind = _load_mlflow(text, tracking_uri, load_args)
    else:
        model, tokenizer, kind = _load_directory(Path(text), load_args)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return Scorer(model.to(device), tokenizer, text, kind, batch_size, max_length, min_response_tokens)

