"""The proxy reward as a TRL reward function: the project's own scores of (prompt, completion).

TRL calls a reward function with the prompts and the decoded completions of a step; `ProxyReward` scores them
with `rewardlab.scoring.score_responses`, the function every other part of the project scores responses with,
so the policy is optimized against exactly the rewards that evaluation and best-of-n report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewardlab.rl.config import RlConfig


class ProxyReward:
    """`reward(prompts, completions, **kwargs) -> list[float]`: a reward model's rewards, as TRL expects them.

    The rewards are `score_responses(model, tokenizer, prompts, completions, ...)` with the settings given here,
    unchanged, or `(reward - mean) / std` when `normalize=(mean, std)` is given (e.g. the reward model's training
    statistics). `model` is anything `score_responses` scores with: a `RewardModel`, a `RewardEnsemble`, or the
    exported sequence classifier as `rewardlab.scorer` wraps it. `source` names where the model came from.
    """

    __name__ = "proxy"

    def __init__(self, model, tokenizer, *, batch_size: int = 64, max_length: int = 512,
                 min_response_tokens: int = 64, normalize: tuple[float, float] | None = None,
                 packing: bool = False, max_tokens: int | None = None, source: str | None = None):
        if normalize is not None:
            mean, std = (float(value) for value in normalize)
            if not np.isfinite(mean) or not np.isfinite(std) or std <= 0:
                raise ValueError(f"normalize needs a finite mean and a positive std, got {normalize}")
            normalize = (mean, std)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.min_response_tokens = min_response_tokens
        self.normalize = normalize
        self.packing = packing
        self.max_tokens = max_tokens
        self.source = source  # where the model came from: part of a training run's identity

    def scores(self, prompts: Sequence, completions: Sequence) -> np.ndarray:
        """The rewards as an array (float64), normalized when asked."""
        from rewardlab.scoring import score_responses

        prompts, completions = list(prompts), list(completions)
        if len(prompts) != len(completions):
            raise ValueError(f"got {len(prompts)} prompts but {len(completions)} completions")
        rewards = score_responses(self.model, self.tokenizer, prompts, completions, batch_size=self.batch_size,
                                  max_length=self.max_length, progress=False, packing=self.packing,
                                  max_tokens=self.max_tokens, min_response_tokens=self.min_response_tokens)
        if self.normalize is not None:
            mean, std = self.normalize
            rewards = (rewards - mean) / std
        return rewards

    def __call__(self, prompts: Sequence, completions: Sequence, **kwargs: Any) -> list[float]:
        return self.scores(prompts, completions).tolist()


def load_proxy_reward(path_or_model: str | os.PathLike | Any, cfg: RlConfig | None = None, *, tokenizer=None,
                      normalize: tuple[float, float] | None = None, device: str = "auto") -> ProxyReward:
    """A `ProxyReward` for the proxy reward model.

    `path_or_model` is anything `rewardlab.scorer.load_scorer` loads (a reward model or ensemble directory, a
    versioned dataset directory holding them, an exported `AutoModelForSequenceClassification` directory, an
    MLflow `models:/` or `runs:/` URI), a loaded `rewardlab.scorer.Scorer`, or a loaded reward model with its
    `tokenizer`. Scoring settings (batch size, max_length, min_response_tokens, dtype) come from `cfg`.
    """
    from rewardlab.rl.quiet import quiet_libraries
    from rewardlab.scorer import Scorer, load_scorer

    cfg = cfg or RlConfig()
    settings = {"batch_size": cfg.score_batch_size, "max_length": cfg.max_length,
                "min_response_tokens": cfg.min_response_tokens, "normalize": normalize}
    if isinstance(path_or_model, (str, os.PathLike)):
        with quiet_libraries():
            scorer = load_scorer(path_or_model, batch_size=cfg.score_batch_size, max_length=cfg.max_length,
                                 device=device, dtype=cfg.dtype, min_response_tokens=cfg.min_response_tokens)
        return ProxyReward(scorer.model, scorer.tokenizer, source=str(path_or_model), **settings)
    if isinstance(path_or_model, Scorer):
        return ProxyReward(path_or_model.model, path_or_model.tokenizer, source=path_or_model.source, **settings)
    if tokenizer is None:
        raise ValueError("a loaded reward model needs its tokenizer (tokenizer=...)")
    return ProxyReward(path_or_model, tokenizer, **settings)
