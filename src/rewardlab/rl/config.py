"""Every setting of policy optimization against a proxy reward, with its default, range and one line of help.

The defaults are sized for the default world's policy on two CPU cores: 100 RLOO steps of 8 prompts x 4
completions, evaluated every 10 steps on 32 held-out prompts.
"""

from __future__ import annotations

from typing import Any, Literal

from rewardlab.training.config import WEIGHT_DTYPES
from rewardlab.typed_config import TypedConfig, setting


class RlConfig(TypedConfig):
    algorithm: Literal["rloo", "grpo"] = setting("rloo", "TRL trainer: rloo (leave-one-out baseline, KL as a "
                                                         "reward penalty) | grpo (group-normalized advantages, KL "
                                                         "in the loss)")
    steps: int = setting(100, "optimizer steps (one batch of fresh completions each)", ge=1)
    prompts_per_step: int = setting(8, "training prompts per step", ge=1)
    group_size: int = setting(4, "completions sampled per prompt (TRL num_generations; the baseline's group)", ge=2)
    max_new_tokens: int = setting(48, "tokens per completion", ge=1)
    temperature: float = setting(1.0, "sampling temperature (KL and log-probabilities are those of the tempered "
                                      "distribution)", gt=0.0)
    top_p: float = setting(1.0, "nucleus sampling mass", gt=0.0, le=1.0)
    learning_rate: float = setting(1e-4, "AdamW learning rate, constant", gt=0.0)
    max_grad_norm: float = setting(1.0, "gradient norm clip (0: none)", ge=0.0)
    kl_coef: float = setting(0.05, "KL coefficient to the initial policy (TRL beta; 0: no KL term)", ge=0.0)
    normalize_rewards: bool = setting(True, "scale the proxy's advantages to unit variance: rloo over the step's "
                                            "batch (TRL normalize_advantages), grpo within each prompt's group "
                                            "(TRL scale_rewards=group); false: raw proxy units")
    eval_every: int = setting(10, "evaluate on the fixed eval prompts every k steps (and at step 0 and the last)",
                              ge=1)
    num_eval_prompts: int = setting(32, "eval prompts (the first ones given)", ge=1)
    eval_samples_per_prompt: int = setting(4, "completions sampled per eval prompt at each evaluation", ge=1)
    eval_batch_size: int = setting(128, "sequences per eval generation batch", ge=1)
    save_every: int = setting(10, "checkpoint every k steps (and at the last), to resume a stopped run", ge=1)
    seed: int = setting(0, "seed of the prompt order, the sampling and the evaluation samples")
    gold: str = setting("world", "the gold reward that scores the same completions (never trained on): `world` "
                                 "(the world's scorer) or a saved reward model directory")
    tuning: Literal["full", "lora"] = setting("full", "train every weight, or LoRA adapters (merged on return)")
    lora_r: int = setting(8, "LoRA rank", ge=1)
    lora_alpha: float = setting(16.0, "LoRA scaling numerator", gt=0.0)
    lora_target_modules: list[str] | str = setting("all-linear", "LoRA target modules: PEFT's names, or all-linear",
                                                   min_length=1)
    gradient_checkpointing: bool = setting(False, "recompute activations in the backward pass (less memory, "
                                                  "slower)", observational=True)
    score_batch_size: int = setting(64, "sequences per proxy-scored batch", ge=1, observational=True)
    max_length: int = setting(160, "tokens per proxy-scored sequence (prompt + response)", ge=1)
    min_response_tokens: int = setting(64, "response tokens a cut scored sequence keeps at least", ge=1)
    dtype: Literal[WEIGHT_DTYPES] | None = setting(None, "policy and proxy weights as loaded: null (as saved) | "
                                                         "float32 | bfloat16 | float16")
    attn_implementation: str | None = setting(None, "policy attention: null (transformers' default, sdpa) | eager | "
                                                    "flex_attention | flash_attention_2", pattern=r"\S",
                                              observational=True)

    def load_args(self) -> dict[str, Any]:
        """`from_pretrained` keyword arguments of the policy: only what is set, so transformers' defaults stay."""
        from rewardlab.modeling import lm_load_args

        return lm_load_args(self.to_dict(), "rl")

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.group_size
