"""Which weights train: full fine-tuning, LoRA adapters on the LM, or the reward head alone."""

from __future__ import annotations

import hashlib
import warnings

import torch
from torch import nn

from rewardlab.modeling import RewardModel
from rewardlab.training.config import TrainConfig


def disable_dropout(model: nn.Module) -> None:
    """Zero every dropout probability (reward head, LM attention, LoRA): training becomes a pure function of
    the data order, which also makes runs on different process counts comparable step by step."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def _output_embeddings_tied(causal_lm) -> bool:
    out, inp = causal_lm.get_output_embeddings(), causal_lm.get_input_embeddings()
    return out is not None and inp is not None and out.weight is inp.weight


def apply_tuning(model: RewardModel, cfg: TrainConfig) -> None:
    """Set `requires_grad` (and wrap the LM with LoRA adapters) according to `cfg.tuning`, in place."""
    if cfg.disable_dropout:
        disable_dropout(model)
    if cfg.tuning == "lora":
        from peft import LoraConfig, get_peft_model

        lora = LoraConfig(r=int(cfg.lora_r), lora_alpha=int(cfg.lora_alpha), lora_dropout=float(cfg.lora_dropout),
                          target_modules=list(cfg.lora_target_modules), bias="none")
        with warnings.catch_warnings():
            # peft reads a transformers property that transformers 5.2x deprecates; nothing to act on here.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            model.lm = get_peft_model(model.lm, lora)  # freezes every LM weight but the adapters
        if cfg.disable_dropout:
            disable_dropout(model.lm)
    else:
        model.lm.requires_grad_(cfg.tuning == "full")
    model.reward_head.requires_grad_(True)
    causal_lm = model.causal_lm()
    if cfg.tuning == "full" and not cfg.loss.needs_logps and not _output_embeddings_tied(causal_lm):
        # Without an S(y) term nothing reaches the LM head; trainable but unused weights would make
        # DistributedDataParallel fail and bloat every checkpoint.
        causal_lm.get_output_embeddings().requires_grad_(False)
    if cfg.gradient_checkpointing:
        causal_lm.config.use_cache = False
        if hasattr(causal_lm, "activation_checkpointing_enable"):  # the name since transformers 5.2x
            causal_lm.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            causal_lm.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})


def finish_tuning(model: RewardModel, cfg: TrainConfig) -> RewardModel:
    """The trained model as a plain RewardModel: adapters merged, checkpointing off, eval mode."""
    if model.is_peft:
        model.lm = model.lm.merge_and_unload()
    if cfg.gradient_checkpointing:
        causal_lm = model.causal_lm()
        getattr(causal_lm, "activation_checkpointing_disable", causal_lm.gradient_checkpointing_disable)()
    return model.eval()


def model_fingerprint(model: RewardModel) -> str:
    """Cheap identity of an in-memory model for the configuration hash: its origin, shapes and head weights."""
    digest = hashlib.sha256()
    digest.update(str(model.base_model_name).encode())
    digest.update(model.head_type.encode())
    for name, p in model.named_parameters():
        digest.update(f"{name}:{tuple(p.shape)}:{p.dtype}".encode())
    for tensor in model.reward_head.state_dict().values():
        digest.update(tensor.detach().float().cpu().numpy().tobytes())
    return digest.hexdigest()[:16]


def trainable_parameters(model: nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def optimizer_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """AdamW groups: matrices decay, biases and norm scales do not."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim < 2]
    groups = [{"params": decay, "weight_decay": float(weight_decay)}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups
