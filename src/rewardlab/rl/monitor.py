"""What policy optimization is watched by: proxy, gold, KL, length and marker rate of the completions.

Two kinds of rows make the curves:

- `train` at step k: the completions the k-th update was computed from (sampled by the policy after k-1
  updates), their proxy rewards as the trainer received them, their gold scores, and their sampled KL to the
  initial policy;
- `eval` at step 0, every `eval_every` steps and at the last step: `eval_samples_per_prompt` fresh completions
  of the fixed eval prompts by the policy after k updates, scored the same way. Every evaluation samples from
  the same seed, so successive rows differ by the policy only.

The gold reward is applied here only, after the update of its step: the trainer never sees it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch

from rewardlab.encoding import pad_id, padded_batch
from rewardlab.rl.kl import completion_logprobs, completion_tensors, sampled_kl
from rewardlab.world.corpus import strip_marker

CURVE_COLUMNS = ["split", "step", "kl", "proxy", "gold", "length", "marker_fraction"]
METRICS = ("proxy", "gold", "kl", "length", "marker_fraction")


def has_marker(response: str) -> bool:
    """Whether a response carries the world's spurious marker anywhere (any case)."""
    return strip_marker(response) != response


def response_lengths(completion_ids: Sequence[Sequence[int]], eos_ids: Sequence[int]) -> np.ndarray:
    """Tokens of each completion before its first end-of-sequence token."""
    eos = set(eos_ids)
    lengths = []
    for ids in completion_ids:
        ids = list(ids)
        lengths.append(next((i for i, token in enumerate(ids) if token in eos), len(ids)))
    return np.asarray(lengths, dtype=np.float64)


@dataclass
class ScoredCompletions:
    """Completions with everything a curve row needs, one entry per completion."""

    prompts: list[str]
    completions: list[str]
    proxy: np.ndarray
    kl: np.ndarray
    lengths: np.ndarray

    def row(self, split: str, step: int, gold: np.ndarray) -> dict[str, Any]:
        return {"split": split, "step": int(step), "kl": float(np.mean(self.kl)),
                "proxy": float(np.nanmean(self.proxy)), "gold": float(np.mean(gold)),
                "length": float(np.mean(self.lengths)),
                "marker_fraction": float(np.mean([has_marker(text) for text in self.completions]))}


class RecordingReward:
    """The trainer's reward function: the proxy's rewards passed on unchanged, and the scored texts remembered."""

    def __init__(self, reward: Callable[..., list]):
        self.reward = reward
        self.__name__ = getattr(reward, "__name__", type(reward).__name__)
        self.calls: list[tuple[list, list, np.ndarray]] = []

    def __call__(self, prompts, completions, **kwargs) -> list:
        rewards = self.reward(prompts=prompts, completions=completions, **kwargs)
        values = np.asarray([np.nan if value is None else float(value) for value in rewards], dtype=np.float64)
        self.calls.append((list(prompts), list(completions), values))
        return rewards

    def take(self) -> tuple[list, list, np.ndarray]:
        if len(self.calls) != 1:
            raise RuntimeError(f"expected one reward call per generated batch, saw {len(self.calls)}")
        return self.calls.pop()


class PolicyMonitor:
    """Scores completions by proxy and gold, measures their KL to the reference, and keeps the curve rows.

    `reference` is a frozen copy of the initial policy, or None when the policy is a PEFT model whose adapters,
    disabled, give the initial policy. Evaluations sample with `generation_config` (the trainer's) and end a
    completion at any of `eos_ids`.
    """

    def __init__(self, *, tokenizer, recorder: RecordingReward, gold, reference, eval_prompts: Sequence[str],
                 cfg, generation_config, eos_ids: Sequence[int],
                 log_metrics: Callable[[dict[str, float], int], None] | None = None):
        self.tokenizer = tokenizer
        self.recorder = recorder
        self.gold = gold
        self.reference = reference
        self.eval_prompts = list(eval_prompts)[: cfg.num_eval_prompts]
        self.cfg = cfg
        self.log_metrics = log_metrics
        self.rows: list[dict[str, Any]] = []
        self.pending: ScoredCompletions | None = None
        self.generation_config = generation_config
        self.eos_ids = list(eos_ids)

    # ------------------------------------------------------------------------------------------- KL
    def kl(self, policy, tensors: dict[str, torch.Tensor]) -> np.ndarray:
        """Sampled KL of each completion: its log-probability under the policy minus under the reference."""
        options = {"temperature": self.cfg.temperature, "batch_size": self.cfg.completions_per_step}
        policy_logps = completion_logprobs(policy, **tensors, **options)
        if self.reference is not None:
            reference_logps = completion_logprobs(self.reference, **tensors, **options)
        else:
            with policy.disable_adapter():
                reference_logps = completion_logprobs(policy, **tensors, **options)
        return sampled_kl(policy_logps, reference_logps, tensors["completion_mask"]).numpy()

    # ---------------------------------------------------------------------------------------- training
    def on_generated(self, policy, batch: dict[str, torch.Tensor]) -> None:
        """Called with the trainer's generated batch, before the update it feeds: the policy is the sampler."""
        prompts, completions, proxy = self.recorder.take()
        tensors = {key: batch[key] for key in ("prompt_ids", "prompt_mask", "completion_ids", "completion_mask")}
        completion_ids = [ids[mask.bool()].tolist() for ids, mask in
                          zip(tensors["completion_ids"].cpu(), tensors["completion_mask"].cpu())]
        self.pending = ScoredCompletions(prompts, completions, proxy, self.kl(policy, tensors),
                                         response_lengths(completion_ids, self.eos_ids))

    def finish_step(self, policy, step: int, evaluate: bool) -> None:
        """After the update of `step`: the gold scores of its completions, an evaluation when due, the metrics."""
        metrics = {}
        if self.pending is not None:
            batch, self.pending = self.pending, None
            row = batch.row("train", step, self.gold.score(batch.prompts, batch.completions))
            self.rows.append(row)
            metrics.update({f"train.{name}": row[name] for name in METRICS})
        if evaluate:
            row = self.evaluate(policy, step)
            metrics.update({f"eval.{name}": row[name] for name in METRICS})
        if metrics and self.log_metrics is not None:
            self.log_metrics(metrics, step)

    def replay(self) -> None:
        """Send the metrics of rows restored from a checkpoint again, step by step."""
        if self.log_metrics is None:
            return
        for step in sorted({row["step"] for row in self.rows}):
            metrics = {f"{row['split']}.{name}": row[name] for row in self.rows if row["step"] == step
                       for name in METRICS}
            self.log_metrics(metrics, step)

    # ---------------------------------------------------------------------------------------- evaluation
    def evaluate(self, policy, step: int) -> dict[str, Any]:
        """Sample the eval prompts with `policy`, score by proxy and gold, measure KL; append and return the row."""
        prompts, prompt_ids, completion_ids, texts = self.sample(policy)
        tensors = completion_tensors(prompt_ids, completion_ids, pad_id(self.tokenizer, required=True))
        proxy = self.recorder.reward(prompts=prompts, completions=texts, completion_ids=completion_ids)
        scored = ScoredCompletions(prompts, texts, np.asarray(proxy, dtype=np.float64), self.kl(policy, tensors),
                                   response_lengths(completion_ids, self.eos_ids))
        row = scored.row("eval", step, self.gold.score(prompts, texts))
        self.rows.append(row)
        return row

    def sample(self, policy) -> tuple[list[str], list[list[int]], list[list[int]], list[str]]:
        """`eval_samples_per_prompt` completions of every eval prompt, from one seed, leaving the caller's random
        streams untouched (the training run goes on exactly as without the evaluation)."""
        cfg = self.cfg
        prompts = [prompt for prompt in self.eval_prompts for _ in range(cfg.eval_samples_per_prompt)]
        encoded = self.tokenizer(prompts)["input_ids"]
        pad_token = pad_id(self.tokenizer, required=True)
        device = next(policy.parameters()).device
        devices = [device] if device.type == "cuda" else []
        completions: list[list[int]] = []
        was_training = policy.training
        policy.eval()
        try:
            with torch.random.fork_rng(devices=devices), torch.no_grad():
                torch.manual_seed(cfg.seed)
                for start in range(0, len(prompts), cfg.eval_batch_size):
                    batch = padded_batch(encoded[start : start + cfg.eval_batch_size], pad_token, side="left")
                    output = policy.generate(input_ids=batch["input_ids"].to(device),
                                             attention_mask=batch["attention_mask"].to(device),
                                             generation_config=self.generation_config)
                    for ids in output[:, batch["input_ids"].shape[1]:].cpu().tolist():
                        end = next((i for i, token in enumerate(ids) if token in self.eos_ids), None)
                        completions.append(ids[: end + 1] if end is not None else ids)
        finally:
            policy.train(was_training)
        texts = self.tokenizer.batch_decode(completions, skip_special_tokens=True)
        return prompts, encoded, completions, texts

    def frame(self) -> pd.DataFrame:
        return curves_frame(self.rows)


def curves_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The curves: one row per logged step and split, train rows first, each by step."""
    frame = pd.DataFrame(list(rows), columns=CURVE_COLUMNS)
    order = frame["split"].map({"train": 0, "eval": 1})
    frame = frame.assign(_order=order).sort_values(["_order", "step"], kind="stable", ignore_index=True)
    return frame.drop(columns="_order")
