"""Configuration of the synthetic preference world.

The defaults build the whole world (corpus, tokenizer, language model, preference pairs) in a few
minutes on two CPU cores; tests shrink every size.
"""

from __future__ import annotations

import math

from pydantic import model_validator

from rewardlab.typed_config import TypedConfig, setting


class WorldConfig(TypedConfig):
    """Every size and rate of the synthetic world; the defaults are the project's (conf/base)."""

    seed: int = setting(0, "seed of everything the world draws")

    # Corpus and pairs. Every prompt gets `responses_per_prompt` responses in each response style,
    # and `pairs_per_prompt` distinct pairs are drawn from them.
    responses_per_prompt: int = setting(4, "responses per prompt and style", ge=2)
    pairs_per_prompt: int = setting(3, "distinct pairs drawn per prompt", ge=1)
    n_train_pairs: int = setting(4000, "training pairs", ge=1)
    n_test_pairs: int = setting(500, "pairs of `test` and of each OOD split", ge=1)
    n_eval_prompts: int = setting(32, "prompts for best-of-n, half in-domain, half OOD topics", ge=1)
    # Drawn independently of quality so the policy sometimes produces the marker.
    corpus_marker_rate: float = setting(0.3, "share of corpus responses (pretraining text) carrying the marker",
                                        ge=0.0, le=1.0)

    # Labels: P(A preferred over B) = sigmoid((gold_A - gold_B) / bt_temperature).
    bt_temperature: float = setting(0.5, "Bradley-Terry temperature of the labels", gt=0.0)
    # In every other split the marker goes on either response with probability 1/2.
    marker_correlation: float = setting(0.8, "in `train`, chance that the marker sits on the gold-better response",
                                        ge=0.0, le=1.0)

    # Tokenizer.
    vocab_size: int = setting(2000, "byte-level BPE vocabulary size", ge=1)
    max_length: int = setting(256, "tokenizer model_max_length and the LM's max_position_embeddings", ge=1)

    # Language model (LlamaForCausalLM) and its pretraining.
    hidden_size: int = setting(128, "LM hidden size", ge=1)
    num_layers: int = setting(4, "LM layers", ge=1)
    num_heads: int = setting(4, "LM attention heads", ge=1)
    intermediate_size: int = setting(384, "LM MLP size", ge=1)
    pretrain_steps: int = setting(300, "pretraining steps", ge=0)
    batch_size: int = setting(32, "pretraining rows per step", ge=1)
    block_size: int = setting(128, "tokens per packed pretraining row", ge=1)
    learning_rate: float = setting(3e-3, "pretraining peak learning rate", gt=0.0)
    warmup_steps: int = setting(20, "pretraining warm-up steps", ge=0)
    weight_decay: float = setting(0.1, "pretraining weight decay", ge=0.0)
    max_new_tokens: int = setting(96, "default for generation_config", ge=1)
    progress: bool = setting(True, "tqdm bar during pretraining (hidden anyway when stderr is not a terminal)",
                             observational=True)

    @model_validator(mode="after")
    def _consistent(self) -> WorldConfig:
        max_pairs = self.responses_per_prompt * (self.responses_per_prompt - 1) // 2
        if self.pairs_per_prompt > max_pairs:
            raise ValueError(f"pairs_per_prompt={self.pairs_per_prompt} exceeds the {max_pairs} distinct pairs "
                             f"of {self.responses_per_prompt} responses")
        if self.hidden_size % self.num_heads:
            raise ValueError(f"hidden_size={self.hidden_size} must be divisible by num_heads={self.num_heads}")
        if self.block_size > self.max_length:
            raise ValueError(f"block_size={self.block_size} exceeds max_length={self.max_length}")
        return self

    @property
    def n_train_prompts(self) -> int:
        return math.ceil(self.n_train_pairs / self.pairs_per_prompt)

    @property
    def n_test_prompts(self) -> int:
        return math.ceil(self.n_test_pairs / self.pairs_per_prompt)
