"""Optimize a policy against a proxy reward with TRL (RLOO or GRPO), watched by a gold reward it never sees.

`train_policy` loads the policy, hands TRL the proxy as the only reward function, keeps the initial policy as
the KL reference, and records per step the proxy, gold, KL, length and marker rate of the completions trained
on, plus evaluations on fixed prompts (`rewardlab.rl.monitor`). It checkpoints atomically and resumes a stopped
run from its last checkpoint to the result an uninterrupted run gives (`rewardlab.rl.state`). One process,
on the GPU when there is one.
"""

from __future__ import annotations

import functools
import logging
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rewardlab.rl.config import RlConfig
from rewardlab.rl.monitor import PolicyMonitor, RecordingReward
from rewardlab.rl.quiet import quiet_libraries
from rewardlab.rl.state import (commit_checkpoint, latest_checkpoint, restored_rows, run_directory, run_fingerprint,
                                staging_directory)

logger = logging.getLogger(__name__)

PROMPT_ORDER_STREAM = 7


def training_prompt_order(train_prompts: Sequence[str], cfg: RlConfig) -> list[str]:
    """The prompts of every step, in order: consecutive seeded permutations of `train_prompts`, cut to
    `steps * prompts_per_step`. Fixed before training, so a resumed run picks up the same prompts."""
    prompts = list(train_prompts)
    if not prompts:
        raise ValueError("train_policy needs at least one training prompt")
    rng = np.random.default_rng([cfg.seed, PROMPT_ORDER_STREAM])
    needed = cfg.steps * cfg.prompts_per_step
    order: list[int] = []
    while len(order) < needed:
        order.extend(rng.permutation(len(prompts)).tolist())
    return [prompts[i] for i in order[:needed]]


def train_policy(policy_path: str, proxy_reward, train_prompts: list[str], eval_prompts: list[str], cfg: RlConfig,
                 state_dir: str | Path, *, gold=None,
                 log_metrics: Callable[[dict[str, float], int], None] | None = None,
                 identity: Mapping[str, Any] | None = None):
    """Optimize the policy saved in `policy_path` against `proxy_reward`; return (policy, tokenizer, curves).

    `proxy_reward` is a TRL reward function (`reward(prompts, completions, **kwargs) -> list[float]`, e.g.
    `rewardlab.rl.rewards.ProxyReward`): the only reward the trainer optimizes. `gold` (default
    `load_gold_reward(cfg.gold)`, anything with `score(prompts, responses)`) scores the same completions after
    each update, for the curves only. `log_metrics(metrics, step)` receives `train.*` every step and `eval.*` at
    each evaluation (proxy, gold, kl, length, marker_fraction); a resumed run sends the restored steps first.

    Checkpoints go to `state_dir` every `save_every` steps and at the last; a run whose `state_dir` holds a
    checkpoint of the same configuration, policy, prompts and `identity` (e.g. the proxy's source; a
    `ProxyReward` loaded by `load_proxy_reward` names its own) resumes from it. The curves DataFrame has the
    columns split ("train"/"eval"), step, kl, proxy, gold, length, marker_fraction. A LoRA policy is returned
    with its adapters merged.
    """
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, PrinterCallback, ProgressCallback

    from rewardlab.world import load_gold_reward

    if not eval_prompts:
        raise ValueError("train_policy needs at least one eval prompt")
    identity = {"proxy": getattr(proxy_reward, "source", None), **(identity or {})}
    fingerprint = run_fingerprint(cfg, policy_path, train_prompts, eval_prompts, identity)
    run_dir = run_directory(state_dir, fingerprint)
    resume_from = latest_checkpoint(run_dir, fingerprint)

    with quiet_libraries():
        gold = gold if gold is not None else load_gold_reward(cfg.gold)
        tokenizer = AutoTokenizer.from_pretrained(policy_path)
        policy = AutoModelForCausalLM.from_pretrained(policy_path, **cfg.load_args())
        recorder = RecordingReward(proxy_reward)
        trainer = _trainer_class(cfg.algorithm)(
            model=policy, reward_funcs=[recorder], args=_trl_args(cfg, run_dir), processing_class=tokenizer,
            train_dataset=Dataset.from_dict({"prompt": training_prompt_order(train_prompts, cfg)}),
            peft_config=_lora_config(cfg),
        )
        for noisy in (PrinterCallback, ProgressCallback):
            trainer.remove_callback(noisy)
        monitor = PolicyMonitor(tokenizer=tokenizer, recorder=recorder, gold=gold,
                                reference=_reference(trainer, policy_path, cfg), eval_prompts=eval_prompts, cfg=cfg,
                                generation_config=trainer.generation_config, eos_ids=trainer.eos_token_ids,
                                log_metrics=log_metrics)
        trainer.rl_monitor, trainer.rl_run = monitor, (run_dir, fingerprint)
        trainer.add_callback(_monitor_callback(monitor, cfg))

        if resume_from is not None:
            monitor.rows = restored_rows(resume_from)
            logger.info("Resuming policy optimization from %s", resume_from)
            monitor.replay()
        trainer.train(resume_from_checkpoint=str(resume_from) if resume_from is not None else None)

    model = trainer.accelerator.unwrap_model(trainer.model)
    if cfg.tuning == "lora":
        model = model.merge_and_unload()
    model.__dict__.pop("forward", None)  # TRL's fused log-prob head: the model's own forward again
    return model.eval(), tokenizer, monitor.frame()


# ------------------------------------------------------------------------------------------------- TRL set-up


def _trl_args(cfg: RlConfig, run_dir: Path):
    from trl import GRPOConfig, RLOOConfig

    common = dict(
        output_dir=str(run_dir), max_steps=cfg.steps, per_device_train_batch_size=cfg.completions_per_step,
        gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1, num_generations=cfg.group_size,
        max_completion_length=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p, top_k=0,
        learning_rate=cfg.learning_rate, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        max_grad_norm=cfg.max_grad_norm, beta=cfg.kl_coef, seed=cfg.seed, data_seed=cfg.seed,
        shuffle_dataset=False, disable_dropout=True, gradient_checkpointing=cfg.gradient_checkpointing,
        bf16=False, fp16=False, report_to="none", logging_strategy="steps", logging_steps=1,
        save_strategy="steps", save_steps=cfg.save_every, save_total_limit=None, disable_tqdm=True,
        dataloader_num_workers=0, dataloader_pin_memory=torch.cuda.is_available(), remove_unused_columns=False,
        eval_strategy="no", log_completions=False,
    )
    if cfg.algorithm == "rloo":
        return RLOOConfig(**common, normalize_advantages=cfg.normalize_rewards)
    return GRPOConfig(**common, scale_rewards="group" if cfg.normalize_rewards else "none")


def _lora_config(cfg: RlConfig):
    if cfg.tuning != "lora":
        return None
    from peft import LoraConfig

    return LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, task_type="CAUSAL_LM",
                      target_modules=cfg.lora_target_modules)


def _reference(trainer, policy_path: str, cfg: RlConfig):
    """The initial policy for the KL: the trainer's own reference when it keeps one, none for LoRA (the
    adapters disabled), else a frozen copy loaded from `policy_path`."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    if isinstance(trainer.accelerator.unwrap_model(trainer.model), PeftModel):
        return None
    if getattr(trainer, "ref_model", None) is not None:
        return trainer.ref_model
    reference = AutoModelForCausalLM.from_pretrained(policy_path, **cfg.load_args())
    reference.requires_grad_(False)
    return reference.to(trainer.accelerator.device).eval()


@functools.cache
def _trainer_class(algorithm: str):
    """TRL's trainer for `algorithm`, with the monitor's view of each generated batch and atomic checkpoints."""
    from transformers import Trainer
    from trl import GRPOTrainer, RLOOTrainer

    base = RLOOTrainer if algorithm == "rloo" else GRPOTrainer

    class MonitoredTrainer(base):
        rl_monitor: PolicyMonitor
        rl_run: tuple[Path, str]

        def _generate_and_score_completions(self, inputs):
            batch = super()._generate_and_score_completions(inputs)
            if self.model.training:
                self.rl_monitor.on_generated(self.accelerator.unwrap_model(self.model), batch)
            return batch

        def _save_checkpoint(self, model, trial):
            # Written by transformers' Trainer into a hidden directory (TRL's model card left out), then completed
            # with the curves and renamed into place.
            run_dir, fingerprint = self.rl_run
            step = self.state.global_step
            staging = staging_directory(run_dir, step)
            output_dir = self.args.output_dir
            self.args.output_dir = str(staging)
            try:
                Trainer._save_checkpoint(self, model, trial)
            finally:
                self.args.output_dir = output_dir
            commit_checkpoint(staging / f"checkpoint-{step}", run_dir, step, fingerprint, self.rl_monitor.rows)
            shutil.rmtree(staging, ignore_errors=True)

    MonitoredTrainer.__name__ = MonitoredTrainer.__qualname__ = f"Monitored{base.__name__}"
    return MonitoredTrainer


def _monitor_callback(monitor: PolicyMonitor, cfg: RlConfig):
    from transformers import TrainerCallback

    class MonitorCallback(TrainerCallback):
        """Evaluates at step 0 of a fresh run, and after each update scores its completions by gold and
        evaluates when due; before the trainer saves, so a checkpoint holds the curves up to its step."""

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            if state.global_step == 0 and not monitor.rows:
                monitor.finish_step(model, 0, evaluate=True)

        def on_step_end(self, args, state, control, model=None, **kwargs):
            step = state.global_step
            monitor.finish_step(model, step, evaluate=step % cfg.eval_every == 0 or step >= state.max_steps)

    return MonitorCallback()
