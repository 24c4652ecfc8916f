"""Which models can read packed rows: several sequences laid end to end, position ids restarting at 0, no mask.

Packing relies on transformers turning restarting position ids (with ``attention_mask=None``) into attention
that stays inside each sequence: a block-causal mask for ``sdpa``, ``eager`` and ``flex_attention``, the
variable-length kernels for ``flash_attention_2/3/4``. With transformers 5.23 this was checked on CPU (packed
and one-sequence-at-a-time outputs agree to float32 rounding) for ``sdpa`` and ``eager`` on every architecture
in `PACKING_MODEL_TYPES`, and for ``flex_attention`` on llama, qwen2, mistral and gemma2; the flash kernels need
a GPU and were not run here. Packing is refused (`PackingNotSupportedError`) for any other attention
implementation (e.g. a kernel registered by name, which receives no mask and would attend across sequences)
and for architectures outside that list: ALiBi models (bloom, mpt), models that derive positions from the
attention mask (opt) and state-space hybrids (falcon_h1) mix packed sequences. `packing_problem` tells which
case applies; training and scoring then fall back to padded batches, which give the same rewards and S(y).

On CPU, torch 2.13 runs ``flex_attention`` forward only (no backward) and its compiler failed on the second
input shape seen, so train on CPU with ``sdpa`` or ``eager``; on CPU a packed row also costs more than padded
batches with ``sdpa``/``eager`` (the block mask is materialized over the whole row): the gain comes from
``flex_attention`` or the flash kernels on a GPU.
"""

from __future__ import annotations

import inspect

from torch import nn

# Attention implementations that keep packed sequences apart given restarting position ids and no mask.
PACKING_ATTENTION = ("sdpa", "eager", "flex_attention", "flash_attention_2", "flash_attention_3", "flash_attention_4")
# transformers architectures (config.model_type) whose packed outputs were checked to match one-sequence-at-a-time
# outputs (tests/test_packing_equivalence.py checks every one of them).
PACKING_MODEL_TYPES = (
    "apertus", "arcee", "cohere", "exaone4", "gemma", "gemma2", "gemma3_text", "glm", "glm4", "gpt2", "gpt_bigcode",
    "gpt_neox", "gptj", "granite", "helium", "hunyuan_v1_dense", "llama", "ministral", "mistral", "mixtral", "olmo",
    "olmo2", "olmoe", "phi", "phi3", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "seed_oss", "smollm3", "stablelm",
    "starcoder2",
)


class PackingNotSupportedError(ValueError):
    """A packed batch was given to a model whose attention cannot keep the packed sequences apart."""


def attention_implementation(causal_lm: nn.Module) -> str:
    return str(getattr(causal_lm.config, "_attn_implementation", None) or "eager")


def packing_problem(causal_lm: nn.Module, backbone: nn.Module) -> str | None:
    """Why packed rows would mix sequences in this transformers causal LM, or None when packing is supported."""
    implementation = attention_implementation(causal_lm)
    if implementation not in PACKING_ATTENTION:
        return (f"attention implementation {implementation!r} cannot keep packed sequences apart; "
                f"packing works with {list(PACKING_ATTENTION)}")
    model_type = getattr(causal_lm.config, "model_type", None)
    if model_type not in PACKING_MODEL_TYPES or not type(causal_lm).__module__.startswith("transformers."):
        return (f"packing is not verified for the {type(causal_lm).__name__} architecture "
                f"(model_type {model_type!r}); verified: {', '.join(PACKING_MODEL_TYPES)}")
    accepted = inspect.signature(backbone.forward).parameters
    if "position_ids" not in accepted and not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
        return f"{type(causal_lm).__name__} takes no position_ids"
    return None
