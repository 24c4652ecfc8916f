"""Training configuration: one typed model, built from the `train` block of the parameters (merged with the
run's variant by `rewardlab.config.GrmTrainConfig`)."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import model_validator

from rewardlab.losses import LossConfig
from rewardlab.typed_config import TypedConfig, setting

HEADS = ("linear", "mlp")
TUNINGS = ("full", "lora", "frozen")
PRECISIONS = ("no", "bf16")
REFERENCES = ("model", "precomputed")
WEIGHT_DTYPES = ("auto", "float32", "bfloat16", "float16")
DISTRIBUTED = ("ddp", "fsdp")
LAUNCHERS = ("local", "slurm")

# Fields that change how a run is observed or stored but not the weights it produces; a run resumed with
# other values for them continues the same trajectory, so they stay out of the configuration hash.
_NOT_HASHED = frozenset({"eval_every", "checkpoint_every", "keep_checkpoints", "progress", "launcher", "num_machines",
                         "rdzv_host", "rdzv_port"})
# Options added after runs were already stored: left out of the hash while unset, so those runs still resume.
_HASHED_WHEN_SET = frozenset({"max_tokens_per_micro_batch", "dtype", "attn_implementation"})
# Options added later whose default reproduces the earlier runs: hashed only when they differ from it.
_HASHED_WHEN_NOT = {"distributed": "ddp"}


class TrainConfig(TypedConfig):
    """Everything that decides how a reward model is trained; the defaults are the project's (conf/base).

    Batch sizes count preference pairs. One optimizer step consumes a global batch of
    ``per_device_batch_size * num_processes * gradient_accumulation_steps`` pairs, so a run on N processes
    with ``per_device_batch_size=b`` sees the same batches as one process with ``b * N``.

    With ``max_tokens_per_micro_batch`` set, each process regroups its pairs of a step into micro-batches of at
    most that many tokens (chosen + rejected; padded or packed size as the batches are built), weighted by
    their share of pairs: the step stays the one-batch step (see `rewardlab.training.microbatch`).
    """

    loss: LossConfig = setting(LossConfig, "the training loss and its weights (variants set it)")
    head: Literal[HEADS] = setting("linear", "reward head: Linear(h,1), or Linear(h,1024) -> ReLU -> Linear(1024,1)")
    # frozen: the LM is a fixed feature extractor, so the GRM losses (which train its LM head) are refused.
    tuning: Literal[TUNINGS] = setting("full", "full: every weight trains; lora: LoRA adapters + the head; "
                                               "frozen: the reward head only")
    lora_r: int = setting(32, "LoRA rank", ge=1)
    lora_alpha: int = setting(64, "LoRA alpha", ge=1)
    lora_dropout: float = setting(0.05, "LoRA dropout", ge=0.0, lt=1.0)
    lora_target_modules: list[str] = setting(lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
                                             "module names LoRA adapts", min_length=1)
    learning_rate: float = setting(1e-3, "peak learning rate (AdamW)", gt=0.0)
    weight_decay: float = setting(0.0, "AdamW weight decay", ge=0.0)
    num_epochs: int = setting(1, "passes over the training pairs", ge=1)
    max_steps: int | None = setting(None, "optimizer steps; caps num_epochs when set (null or 0: no cap)", ge=0)
    per_device_batch_size: int = setting(16, "pairs per process per micro-step", ge=1)
    gradient_accumulation_steps: int = setting(1, "micro-steps per optimizer step", ge=1)
    max_tokens_per_micro_batch: int | None = setting(
        None, "regroup each step's pairs into micro-batches of at most this many tokens (null or 0: off)", ge=0)
    max_length: int = setting(160, "tokens per sequence (prompt + response), cut as rewardlab.encoding says", ge=1)
    min_response_tokens: int = setting(
        64, "response tokens a cut sequence keeps at least (the prompt's start goes first)", ge=1)
    max_grad_norm: float | None = setting(1.0, "gradient clipping norm (null or 0: none; the norm is logged)",
                                          ge=0.0)
    warmup_ratio: float = setting(0.03, "share of steps with a linear warm-up", ge=0.0, lt=1.0)
    mixed_precision: Literal[PRECISIONS] = setting("no", "autocast: no | bf16")
    seed: int = setting(0, "training seed (the pipeline sets grm_train.seed + ensemble member)")
    eval_every: int | None = setting(50, "evaluate every N optimizer steps (null or 0: once, at the end)", ge=0,
                                     observational=True)
    checkpoint_every: int | None = setting(50, "keep a resumable state every N steps (null or 0: none)", ge=0,
                                           observational=True)
    keep_checkpoints: int = setting(2, "resumable states kept", ge=1, observational=True)
    # One row per micro-batch, no padding, when the model's attention keeps packed sequences apart
    # (RewardModel.supports_packing); otherwise the loop warns and uses padded batches.
    packing: bool = setting(False, "pack each micro-batch into one row (no padding)", observational=True)
    # "float32" keeps full-precision master weights under bf16 autocast; None or "auto" loads as saved.
    dtype: Literal[WEIGHT_DTYPES] | None = setting(None, "base model weights as loaded: null (as saved) | float32 | "
                                                         "bfloat16 | float16")
    # "flex_attention" or "flash_attention_2" make packed rows cheap on GPUs; None: transformers' default (sdpa).
    attn_implementation: str | None = setting(None, "transformers' attention implementation (null: its default)",
                                              pattern=r"\S", observational=True)
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass", observational=True)
    torch_compile: bool = setting(False, "torch.compile the model", observational=True)
    reference: Literal[REFERENCES] = setting("model", "grm_dpo only: a frozen copy of the initial model, or S_ref "
                                                      "computed up front (precomputed)")
    disable_dropout: bool = setting(False, "dropout off everywhere: training becomes a function of the data")
    num_processes: int = setting(1, "training processes in all (the node launches torchrun when > 1)", ge=1)
    # fsdp: FSDP2 fully_shard per decoder layer, then the whole model; its checkpoints differ from DDP's.
    distributed: Literal[DISTRIBUTED] = setting("ddp", "with num_processes > 1: ddp (replicated weights) | "
                                                       "fsdp (weights, gradients and optimizer state sharded)")
    # Where the processes run does not change what they compute: the launch settings are observational.
    launcher: Literal[LAUNCHERS] = setting(
        "local", "local: torchrun on this machine (other machines join with `rewardlab train-node`); slurm: one "
                 "Slurm job of num_machines nodes (conf/slurm.yml), srun starting one launcher per node",
        observational=True)
    num_machines: int = setting(1, "machines (nodes) the num_processes are spread over, equally", ge=1,
                                observational=True)
    rdzv_host: str = setting("127.0.0.1", "c10d rendezvous host: machine 0's address, reachable from the others "
                                          "(local launcher; a Slurm job uses its first node)", pattern=r"\S",
                             observational=True)
    rdzv_port: int = setting(29500, "c10d rendezvous port on machine 0 (one local machine: a free port instead)",
                             ge=1, le=65535, observational=True)
    progress: bool = setting(True, "progress bar", observational=True)

    @model_validator(mode="after")
    def _frozen_lm_cannot_take_grm_losses(self) -> TrainConfig:
        if self.tuning == "frozen" and self.loss.needs_logps:
            raise ValueError(
                f"tuning='frozen' trains only the reward head, but loss '{self.loss.name}' regularizes the LM's "
                "response log-probs, which a frozen LM cannot change; use tuning 'full' or 'lora' for GRM losses."
            )
        return self

    @model_validator(mode="after")
    def _fsdp_needs_equal_micro_batch_counts(self) -> TrainConfig:
        if self.distributed == "fsdp" and self.max_tokens_per_micro_batch:
            # Every FSDP forward is a collective: processes must run the same number of micro-batches.
            raise ValueError("distributed='fsdp' cannot be combined with max_tokens_per_micro_batch, which gives "
                             "processes different numbers of micro-batches")
        if self.distributed == "fsdp" and self.torch_compile:
            raise ValueError("distributed='fsdp' does not compile the model; set torch_compile to false")
        return self

    @model_validator(mode="after")
    def _machines_get_equal_shares(self) -> TrainConfig:
        if self.num_processes % self.num_machines:
            raise ValueError(f"num_processes ({self.num_processes}) must be a multiple of num_machines "
                             f"({self.num_machines}): every machine runs the same number of processes")
        return self

    @property
    def processes_per_machine(self) -> int:
        return self.num_processes // self.num_machines

    @property
    def global_batch_size(self) -> int:
        """Pairs per optimizer step, over every process."""
        return self.per_device_batch_size * self.num_processes * self.gradient_accumulation_steps

    @property
    def max_grad_norm_or_none(self) -> float | None:
        return float(self.max_grad_norm) if self.max_grad_norm else None

    def config_hash(self, extra: dict[str, Any] | None = None) -> str:
        """Stable hash of what determines the trained weights (plus `extra`: data and base-model fingerprints)."""
        payload = {k: v for k, v in self.to_dict().items()
                   if k not in _NOT_HASHED and not (k in _HASHED_WHEN_SET and not v)
                   and not (k in _HASHED_WHEN_NOT and v == _HASHED_WHEN_NOT[k])}
        payload["_extra"] = extra or {}
        text = json.dumps(payload, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
