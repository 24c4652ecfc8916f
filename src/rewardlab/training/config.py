"""Training configuration: one dataclass, built from the `train` block of the parameters."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from rewardlab.losses import LossConfig

HEADS = ("linear", "mlp")
TUNINGS = ("full", "lora", "frozen")
PRECISIONS = ("no", "bf16")
REFERENCES = ("model", "precomputed")

# Fields that change how a run is observed or stored but not the weights it produces; a run resumed with
# other values for them continues the same trajectory, so they stay out of the configuration hash.
_NOT_HASHED = frozenset({"eval_every", "checkpoint_every", "keep_checkpoints", "progress"})
_FLOATS = frozenset({"lora_dropout", "learning_rate", "weight_decay", "max_grad_norm", "warmup_ratio"})
_INTS = frozenset({"lora_r", "lora_alpha", "num_epochs", "max_steps", "per_device_batch_size",
                   "gradient_accumulation_steps", "max_tokens_per_micro_batch", "max_length", "seed", "eval_every",
                   "checkpoint_every", "keep_checkpoints", "num_processes"})
# Options added after runs were already stored: left out of the hash while unset, so those runs still resume.
_HASHED_WHEN_SET = frozenset({"max_tokens_per_micro_batch", "dtype", "attn_implementation"})
WEIGHT_DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass
class TrainConfig:
    """Everything that decides how a reward model is trained.

    Batch sizes count preference pairs. One optimizer step consumes a global batch of
    ``per_device_batch_size * num_processes * gradient_accumulation_steps`` pairs, so a run on N processes
    with ``per_device_batch_size=b`` sees the same batches as one process with ``b * N``.

    With ``max_tokens_per_micro_batch`` set, each process regroups its pairs of a step into micro-batches of at
    most that many tokens (chosen + rejected; padded or packed size as the batches are built), weighted by
    their share of pairs: the step stays the one-batch step (see `rewardlab.training.microbatch`).
    """

    loss: LossConfig = field(default_factory=LossConfig)
    head: str = "linear"
    # full: every weight trains; lora: LoRA adapters on the LM plus the reward head;
    # frozen: only the reward head trains (the LM is a fixed feature extractor, so GRM losses are refused).
    tuning: str = "full"
    lora_r: int = 32
    lora_alpha: int = 64
    lora_dropout: float = 0.05
    lora_target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])
    learning_rate: float = 1e-5
    weight_decay: float = 0.0
    num_epochs: int = 1
    max_steps: int | None = None  # optimizer steps; caps num_epochs when set (None or 0: no cap)
    per_device_batch_size: int = 8
    gradient_accumulation_steps: int = 1
    max_tokens_per_micro_batch: int | None = None  # None or 0: micro-batches as the batch sizes give them
    max_length: int = 1024
    max_grad_norm: float | None = 1.0  # None or 0: no clipping (the norm is still logged)
    warmup_ratio: float = 0.03
    mixed_precision: str = "no"
    seed: int = 42
    eval_every: int | None = None  # optimizer steps; None or 0: evaluate once, at the end
    checkpoint_every: int | None = None  # optimizer steps; None or 0: no training state is kept
    keep_checkpoints: int = 2
    # One row per micro-batch, no padding, when the model's attention keeps packed sequences apart
    # (RewardModel.supports_packing); otherwise the loop warns and uses padded batches.
    packing: bool = False
    # How the base model is loaded (when it is given as a directory or hub id): the dtype of its weights
    # (None or "auto": as saved, e.g. bf16 for most hub checkpoints; "float32" keeps full-precision master
    # weights under bf16 autocast) and transformers' attention implementation (None: transformers' default,
    # sdpa; "flex_attention" or "flash_attention_2" make packed rows cheap on GPUs).
    dtype: str | None = None
    attn_implementation: str | None = None
    gradient_checkpointing: bool = False
    torch_compile: bool = False
    reference: str = "model"  # grm_dpo only: a frozen copy of the initial model, or S_ref computed up front
    disable_dropout: bool = False  # dropout off everywhere: training becomes a deterministic function of data
    num_processes: int = 1
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            self.loss = LossConfig.from_dict(self.loss)
        self.lora_target_modules = list(self.lora_target_modules)
        # YAML 1.1 reads `1e-5` (no dot) as a string; numbers are normalized so hashes and math agree.
        for name in _FLOATS | _INTS:
            value = getattr(self, name)
            if value is None or isinstance(value, bool):
                continue
            try:
                setattr(self, name, float(value) if name in _FLOATS else int(value))
            except (TypeError, ValueError):
                raise ValueError(f"TrainConfig.{name} must be a number, got {value!r}") from None
        self.validate()

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> TrainConfig:
        """Build from a plain mapping (YAML parameters); unknown keys are an error, not silently ignored."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"Unknown training option(s) {unknown}; known options: {sorted(known)}")
        if "loss" in d and not isinstance(d["loss"], LossConfig):
            d["loss"] = LossConfig.from_dict(d["loss"] or {})
        return cls(**d)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable mapping; `from_dict(to_dict())` gives an equal config."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["loss"] = dataclasses.asdict(self.loss)
        out["lora_target_modules"] = list(self.lora_target_modules)
        return out

    def validate(self) -> None:
        def choice(name: str, allowed: tuple[str, ...]) -> None:
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} must be one of {list(allowed)}, got {getattr(self, name)!r}")

        choice("head", HEADS)
        choice("tuning", TUNINGS)
        choice("mixed_precision", PRECISIONS)
        choice("reference", REFERENCES)
        if self.dtype is not None:
            choice("dtype", WEIGHT_DTYPES)
        if self.attn_implementation is not None and not str(self.attn_implementation).strip():
            raise ValueError("TrainConfig.attn_implementation must be a name (e.g. 'sdpa') or null")
        for name in ("per_device_batch_size", "gradient_accumulation_steps", "num_epochs", "max_length",
                     "num_processes", "keep_checkpoints", "lora_r"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"TrainConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        for name in ("max_steps", "eval_every", "checkpoint_every", "max_tokens_per_micro_batch"):
            value = getattr(self, name)
            if value is not None and int(value) < 0:
                raise ValueError(f"TrainConfig.{name} must be >= 0 or null, got {value!r}")
        if not 0.0 <= float(self.warmup_ratio) < 1.0:
            raise ValueError(f"TrainConfig.warmup_ratio must be in [0, 1), got {self.warmup_ratio!r}")
        if float(self.learning_rate) <= 0:
            raise ValueError(f"TrainConfig.learning_rate must be > 0, got {self.learning_rate!r}")
        if self.tuning == "frozen" and self.loss.needs_logps:
            raise ValueError(
                f"tuning='frozen' trains only the reward head, but loss '{self.loss.name}' regularizes the LM's "
                "response log-probs, which a frozen LM cannot change; use tuning 'full' or 'lora' for GRM losses."
            )

    @property
    def max_grad_norm_or_none(self) -> float | None:
        return float(self.max_grad_norm) if self.max_grad_norm else None

    def config_hash(self, extra: dict[str, Any] | None = None) -> str:
        """Stable hash of what determines the trained weights (plus `extra`: data and base-model fingerprints)."""
        payload = {k: v for k, v in self.to_dict().items()
                   if k not in _NOT_HASHED and not (k in _HASHED_WHEN_SET and not v)}
        payload["_extra"] = extra or {}
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
