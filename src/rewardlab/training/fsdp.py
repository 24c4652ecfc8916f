"""Fully sharded data parallel training with PyTorch's FSDP2 (`torch.distributed.fsdp.fully_shard`).

Each decoder layer becomes its own shard group (gathered just before it runs, freed after), so does the reward
head, and the rest of the reward model (embeddings, final norm, LM head) forms the root group. Every parameter becomes a
DTensor holding this process's slice; gradients are reduce-scattered (averaged over processes, as DDP does).

Checkpoints gather full state dicts to process 0 (`torch.distributed.checkpoint.state_dict` with
`full_state_dict`): the files have the layout of an unsharded run (one safetensors file of trainable
weights, one optimizer file keyed by parameter name), they load without a process group, and sharding
a full tensor again on resume is an exact slice, so a resumed run continues bit-identically. The cost is
one full copy of the trainable state in process 0's CPU memory while saving, which fits the model sizes
this project trains; a sharded `torch.distributed.checkpoint` save would avoid it for larger ones.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager

import torch
from torch import nn

from rewardlab.modeling import RewardModel

FULL_ON_RANK0 = {"full_state_dict": True, "cpu_offload": True}


def decoder_layers(model: RewardModel) -> list[nn.Module]:
    """The LM's repeated blocks: the module classes transformers itself keeps unsplit (`_no_split_modules`)."""
    causal_lm = model.causal_lm()
    names = set(getattr(causal_lm, "_no_split_modules", None) or ())
    layers = [m for m in causal_lm.modules() if type(m).__name__ in names]
    if not layers:
        raise ValueError(f"{type(causal_lm).__name__} names no decoder layer class (_no_split_modules); "
                         "FSDP would shard the whole model as one group")
    return layers


def shard_model(model: RewardModel, mixed_precision: str) -> None:
    """Shard `model` in place over the default process group (call after LoRA and requires_grad are set)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    # bf16: compute in bf16 from float32 master shards; gradients are reduced in float32.
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32) \
        if mixed_precision == "bf16" else MixedPrecisionPolicy()
    for layer in decoder_layers(model):
        fully_shard(layer, mp_policy=policy)
    # A group of its own: the head may keep another dtype than the LM (float32 beside bf16 weights).
    fully_shard(model.reward_head, mp_policy=policy)
    fully_shard(model, mp_policy=policy)


def count_sharded(model: nn.Module) -> tuple[int, int]:
    """(parameters that are DTensors, all parameters)."""
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    return sum(isinstance(p, DTensor) for p in params), len(params)


@contextmanager
def gradient_sync(model: nn.Module, sync: bool):
    """FSDP2's counterpart of DDP's `no_sync`: keep gradients unreduced on all but the last micro-batch."""
    model.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def clip_grad_norm(params: list[torch.Tensor], max_norm: float) -> float:
    """Clip DTensor gradients by their global norm (reduced over every shard) and return that norm."""
    from torch.distributed.tensor import DTensor

    grads = [p.grad for p in params if p.grad is not None]
    total = torch.nn.utils.get_total_norm(grads, norm_type=2.0)
    if isinstance(total, DTensor):
        total = total.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, total)
    return float(total)


def all_finite(model: nn.Module) -> bool:
    """Whether every trainable weight on every process is finite."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    local = all(bool(torch.isfinite(p.to_local() if isinstance(p, DTensor) else p).all())
                for p in model.parameters() if p.requires_grad)
    flag = torch.tensor([1.0 if local else 0.0], device=next(model.parameters()).device)  # NCCL: on the GPU
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item() == 1.0)


def gathered_state(model: nn.Module, optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Full trainable weights and optimizer state on process 0 (empty elsewhere); every process must call."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    options = StateDictOptions(**FULL_ON_RANK0)
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    weights = {k: v.contiguous() for k, v in get_model_state_dict(model, options=options).items() if k in trainable}
    return weights, get_optimizer_state_dict(model, optimizer, options=options)


def load_gathered_state(model: nn.Module, optimizer, weights: dict[str, torch.Tensor], optimizer_state: dict) -> None:
    """Shard full trainable weights and optimizer state (read by every process) back into the run."""
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, set_model_state_dict,
                                                         set_optimizer_state_dict)

    options = StateDictOptions(full_state_dict=True, strict=False)
    set_model_state_dict(model, weights, options=options)
    set_optimizer_state_dict(model, optimizer, optimizer_state, options=StateDictOptions(full_state_dict=True))


class UnshardedSkeleton:
    """What rebuilding an ordinary model needs, recorded before sharding: the LM's config and dtype."""

    def __init__(self, model: RewardModel):
        causal_lm = model.causal_lm()
        self.config = copy.deepcopy(causal_lm.config)
        self.dtype = next(causal_lm.parameters()).dtype
        self.head_type, self.base_model = model.head_type, model.base_model_name
        self.head_dtype = next(model.reward_head.parameters()).dtype

    def gather(self, model: nn.Module, cfg) -> RewardModel | None:
        """The trained weights as an ordinary (unsharded) RewardModel on process 0, None elsewhere; every
        process must call. Tuning is applied to a fresh model of the same architecture (adapters included),
        the full state loaded into it, and `finish_tuning` left to the caller."""
        import torch.distributed as dist
        from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
        from transformers import AutoModelForCausalLM

        from rewardlab.training.tuning import apply_tuning

        state = get_model_state_dict(model, options=StateDictOptions(**FULL_ON_RANK0))
        if dist.get_rank() != 0:
            return None
        lm = AutoModelForCausalLM.from_config(self.config, dtype=self.dtype)
        plain = RewardModel(lm, head_type=self.head_type, base_model=self.base_model)
        plain.reward_head.to(self.head_dtype)
        apply_tuning(plain, cfg)
        plain.load_state_dict(state, strict=True)
        return plain
