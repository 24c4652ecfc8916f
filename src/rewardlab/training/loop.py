"""The reward-model training loop: accelerate, AdamW with cosine warm-up, periodic eval, resumable state.

One optimizer step consumes one global batch (see `BatchPlan`), split into `gradient_accumulation_steps`
micro-batches per process, or regrouped under `max_tokens_per_micro_batch` (see `microbatch`). Each
micro-batch's loss is weighted by its share of the step's pairs. Metrics are computed over the whole global
batch (all micro-batches and all processes), so they do not depend on how the batch was split.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import pandas as pd
import torch
from tqdm.auto import tqdm

from rewardlab.encoding import pad_id
from rewardlab.losses import compute_loss
from rewardlab.modeling import RewardModel, lm_load_args
from rewardlab.training import checkpoint as ckpt
from rewardlab.training import fsdp
from rewardlab.training.config import TrainConfig
from rewardlab.training.data import (BatchPlan, PairExample, collate, data_fingerprint, model_inputs,
                                     tokenize_pairs, truncation_counts, without_rejected_responses)
from rewardlab.training.microbatch import chunk_for_inference, plan_micro_batches
from rewardlab.training.tuning import (apply_tuning, finish_tuning, model_fingerprint, optimizer_groups,
                                       trainable_parameters)

logger = logging.getLogger(__name__)

MetricsLogger = Callable[[dict[str, float], int], None]


class TrainingDivergedError(RuntimeError):
    """The loss or the gradient norm became NaN or infinite; nothing from that step was applied or saved."""

    def __init__(self, message: str, step: int, components: dict[str, float]):
        super().__init__(message)
        self.step = step
        self.components = components


def train_reward_model(
    base_model: str | os.PathLike | RewardModel,
    tokenizer,
    train_pairs: pd.DataFrame,
    eval_pairs: pd.DataFrame | None,
    cfg: TrainConfig | dict,
    state_dir: str | os.PathLike,
    log_metrics: MetricsLogger | None = None,
) -> tuple[RewardModel, list[dict[str, Any]]]:
    """Train a reward model and return it (LoRA merged, eval mode) with one history dict per optimizer step.

    `base_model` is a causal-LM directory or hub id (a fresh reward head is drawn from `cfg.seed`) or a
    RewardModel, which is trained in place. `tokenizer` may be None when `base_model` is a directory
    holding one. Training state goes to `state_dir` every `cfg.checkpoint_every` steps; a later call with
    the same configuration, data and base model resumes from the newest checkpoint there.
    Trains in the current process group only (`cfg.num_processes` must be its size); starting processes
    is `rewardlab.training.launch.run_training`'s job. In a sharded run (`cfg.distributed == "fsdp"`)
    process 0 gets an ordinary model back, the other processes their sharded training model.
    """
    cfg = cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size != cfg.num_processes:
        raise ValueError(f"TrainConfig.num_processes is {cfg.num_processes} but this process group has "
                         f"{world_size} processes (WORLD_SIZE); rewardlab.training.launch.run_training starts "
                         "the processes")
    if tokenizer is None:
        if isinstance(base_model, RewardModel):
            raise ValueError("a tokenizer is required when base_model is a RewardModel object")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(base_model))
    return _Run(base_model, tokenizer, train_pairs, eval_pairs, cfg, Path(state_dir), log_metrics).train()


def _make_accelerator(cfg: TrainConfig):
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    if AcceleratorState._shared_state and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        # accelerate keeps one global state per process: it refuses another mixed precision and silently
        # keeps the first compile setting. Several models trained in one process (an ensemble, a sweep)
        # each get their own. (Launched processes train one model and keep their process group.)
        AcceleratorState._reset_state()
    dynamo = None
    if cfg.torch_compile:
        from accelerate.utils import TorchDynamoPlugin

        dynamo = TorchDynamoPlugin(backend="inductor", dynamic=True)
    return Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision,
                       dynamo_plugin=dynamo, step_scheduler_with_optimizer=False)


def _dispersion(values: torch.Tensor) -> float:
    mean = values.mean()
    return float(values.std(correction=0) / mean) if float(mean) != 0 else float("nan")


class _Run:
    """State of one training run; `train()` drives it."""

    def __init__(self, base_model, tokenizer, train_pairs, eval_pairs, cfg: TrainConfig, state_dir: Path,
                 log_metrics: MetricsLogger | None):
        from accelerate.utils import set_seed
        from transformers import get_cosine_schedule_with_warmup

        self.cfg, self.log_metrics = cfg, log_metrics
        self.acc = acc = _make_accelerator(cfg)
        set_seed(cfg.seed)  # before the model exists: the reward head is drawn from this seed
        self.pad_id = pad_id(tokenizer)
        cut = {"max_length": cfg.max_length, "min_response_tokens": cfg.min_response_tokens}
        self.train_examples = tokenize_pairs(train_pairs, tokenizer, file="train_pairs", **cut)
        has_eval = eval_pairs is not None and len(eval_pairs) > 0
        self.eval_examples = tokenize_pairs(eval_pairs, tokenizer, file="eval_pairs", **cut) if has_eval else []
        self.plan = BatchPlan(len(self.train_examples), cfg.per_device_batch_size, acc.num_processes,
                              cfg.gradient_accumulation_steps, cfg.seed)
        self.total_steps = self.plan.total_steps(cfg.num_epochs, cfg.max_steps)

        if isinstance(base_model, RewardModel):
            if base_model.head_type != cfg.head:
                raise ValueError(f"the given RewardModel has a '{base_model.head_type}' head but cfg.head is "
                                 f"'{cfg.head}'")
            if lm_load_args(cfg.to_dict()):
                logger.warning("TrainConfig %s only apply when the base model is loaded from a path or hub id; "
                               "the given RewardModel is used as it is.", sorted(lm_load_args(cfg.to_dict())))
            model, base_id = base_model, f"model:{model_fingerprint(base_model)}"
        else:
            model = RewardModel.from_base(base_model, head=cfg.head, **lm_load_args(cfg.to_dict()))
            base_id = str(base_model)
        model.to(acc.device)
        self.packing = bool(cfg.packing)
        if self.packing and not model.supports_packing():
            logger.warning("TrainConfig.packing is set, but %s; training on padded batches instead (same "
                           "results, more padding).", model.packing_problem())
            self.packing = False
        self.config_hash = cfg.config_hash({"base_model": base_id, "data": data_fingerprint(self.train_examples)})
        self.run_dir, resume_from = ckpt.resolve_run_directory(state_dir, self.config_hash)
        if acc.is_main_process:
            ckpt.remove_stale_temporaries(self.run_dir)

        self.reference, self.reference_table = None, None
        if cfg.loss.needs_reference and cfg.reference == "model":
            self.reference = model.frozen_reference().to(acc.device)
        elif cfg.loss.needs_reference:
            # Computed once per run, before any update; a resumed run reuses the stored table.
            stored = torch.load(resume_from / "extra.pt", weights_only=True) if resume_from else {}
            self.reference_table = stored.get("reference_logps")
            if self.reference_table is None:
                self.reference_table = self._precompute_reference(model)

        apply_tuning(model, cfg)
        self.model = model
        self.sharded = cfg.distributed == "fsdp" and acc.num_processes > 1
        self.skeleton = None
        if self.sharded:
            self.skeleton = fsdp.UnshardedSkeleton(model)
            fsdp.shard_model(model, cfg.mixed_precision)
            logger.info("FSDP: %d of %d parameters are DTensors sharded over %d processes",
                        *fsdp.count_sharded(model), acc.num_processes)
        self.params = trainable_parameters(model)
        optimizer = torch.optim.AdamW(optimizer_groups(model, cfg.weight_decay), lr=float(cfg.learning_rate),
                                      fused=True if acc.device.type == "cuda" and not self.sharded else None)
        # Not passed to prepare(): accelerate would step it once per process per optimizer step.
        self.scheduler = get_cosine_schedule_with_warmup(
            optimizer, math.ceil(float(cfg.warmup_ratio) * self.total_steps), self.total_steps)
        if self.sharded:  # accelerate's own FSDP support needs its launcher; the model is sharded above
            self.wrapped, self.optimizer = model, optimizer
        else:
            self.wrapped, self.optimizer = acc.prepare(model, optimizer)

        self.start_step, self.history, self.last_checkpoint = 0, [], None
        rng = None
        if resume_from is not None:
            state = ckpt.load_checkpoint(resume_from, process_index=acc.process_index, model=model,
                                         optimizer=self.optimizer, scheduler=self.scheduler, sharded=self.sharded)
            self.start_step, self.history, rng = int(state["meta"]["step"]), state["history"], state["rng"]
            self.last_checkpoint = resume_from
            if acc.is_main_process:
                logger.info("Resuming training from %s (step %d of %d)", resume_from, self.start_step,
                            self.total_steps)
        if rng is not None:
            ckpt.restore_rng_state(rng)
        else:
            set_seed(cfg.seed, device_specific=True)  # dropout masks differ between processes

    # ------------------------------------------------------------------------------------------ batches
    def _batch(self, indices, examples: list[PairExample]) -> dict[str, torch.Tensor]:
        batch = collate([examples[int(i)] for i in indices], self.packing, self.pad_id)
        return {k: v.to(self.acc.device) for k, v in batch.items()}

    def _inference_chunks(self, indices: list[int], examples: list[PairExample]) -> list[list[int]]:
        return chunk_for_inference(indices, examples, 2 * self.cfg.per_device_batch_size,
                                   self.cfg.max_tokens_per_micro_batch, self.packing)

    def _precompute_reference(self, model: RewardModel) -> torch.Tensor:
        """S_ref(y) [n, 2] (chosen, rejected) of every training pair under the initial model, each process
        computing a share of the pairs."""
        n, ranks, rank = len(self.train_examples), self.acc.num_processes, self.acc.process_index
        mine = list(range(rank, n, ranks))
        mine += [mine[-1]] * (math.ceil(n / ranks) - len(mine))  # equal shares for gather; extras are repeats
        values = []
        was_training = model.training
        model.eval()
        with torch.no_grad(), self.acc.autocast():
            for chunk in self._inference_chunks(mine, self.train_examples):
                batch = self._batch(chunk, self.train_examples)
                logps = model(**model_inputs(batch), compute_logps=True).response_logps.float()
                values.append(torch.stack([logps[: len(chunk)], logps[len(chunk):]], dim=1))
        model.train(was_training)
        gathered_idx = self.acc.gather(torch.tensor(mine, device=self.acc.device)).cpu()
        gathered = self.acc.gather(torch.cat(values)).cpu()
        table = torch.full((n, 2), float("nan"))
        table[gathered_idx] = gathered
        return table

    def _reference_logps(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        n_pairs = batch["indices"].shape[0]
        if self.reference_table is not None:
            rows = self.reference_table[batch["indices"].cpu()].to(self.acc.device)
            return rows[:, 0], rows[:, 1]
        with torch.no_grad(), self.acc.autocast():
            logps = self.reference(**model_inputs(batch), compute_logps=True).response_logps.float()
        return logps[:n_pairs], logps[n_pairs:]

    # ------------------------------------------------------------------------------------------- steps
    def _train_step(self, step: int) -> dict[str, float]:
        cfg, acc = self.cfg, self.acc
        needs_logps = cfg.loss.needs_logps
        needs_rejected_logps = cfg.loss.needs_rejected_logps
        micro_batches = plan_micro_batches(self.plan.micro_batches(step, acc.process_index), self.train_examples,
                                           cfg.max_tokens_per_micro_batch, self.packing)
        step_pairs = sum(len(indices) for indices in micro_batches)
        sums: dict[str, torch.Tensor] = {}
        chosen, rejected, norms, logps_c, logps_r = [], [], [], [], []
        self.wrapped.train()
        for micro, indices in enumerate(micro_batches):
            batch = self._batch(indices, self.train_examples)
            if needs_logps and not needs_rejected_logps:
                batch = without_rejected_responses(batch)
            n_pairs = len(indices)
            share = n_pairs / step_pairs  # weight of this micro-batch's per-pair means in the step's
            last = micro == len(micro_batches) - 1
            with self._gradient_sync(last):  # reduce once, after the last
                out = self.wrapped(**model_inputs(batch), compute_logps=needs_logps)
                rewards = out.rewards.float()
                s = out.response_logps.float() if needs_logps else None
                s_c = s[:n_pairs] if s is not None else None
                s_r = s[n_pairs:] if s is not None and needs_rejected_logps else None
                ref_c, ref_r = self._reference_logps(batch) if cfg.loss.needs_reference else (None, None)
                parts = compute_loss(cfg.loss, rewards[:n_pairs], rewards[n_pairs:], s_c, s_r,
                                     ref_c, ref_r, margins=batch["margins"])
                acc.backward(parts["loss"] * share)
            for key, value in parts.items():
                sums[key] = sums.get(key, 0.0) + value.detach().float() * share
            chosen.append(rewards[:n_pairs].detach())
            rejected.append(rewards[n_pairs:].detach())
            norms.append(out.last_hidden.detach().float().norm(dim=-1))
            if s_c is not None:
                logps_c.append(s_c.detach())
            if s_r is not None:
                logps_r.append(s_r.detach())
        keys = sorted(sums)
        reduced = acc.reduce(torch.stack([sums[k] for k in keys]), "mean")
        components = {k: float(v) for k, v in zip(keys, reduced.cpu())}
        max_norm = cfg.max_grad_norm_or_none or float("inf")
        grad_norm = fsdp.clip_grad_norm(self.params, max_norm) if self.sharded else \
            float(acc.clip_grad_norm_(self.params, max_norm))
        if not all(math.isfinite(v) for v in components.values()) or not math.isfinite(grad_norm):
            self._diverged(step + 1, {**components, "grad_norm": grad_norm})
        learning_rate = float(self.scheduler.get_last_lr()[0])
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

        r_c, r_r = acc.gather(torch.cat(chosen)), acc.gather(torch.cat(rejected))
        all_rewards, all_norms = torch.cat([r_c, r_r]), acc.gather(torch.cat(norms))
        metrics = {
            **components,
            "accuracy": float((r_c > r_r).float().mean()),
            "reward_mean": float(all_rewards.mean()),
            "reward_std": float(all_rewards.std(correction=0)),
            "margin_mean": float((r_c - r_r).mean()),
            "hidden_norm_mean": float(all_norms.mean()),
            "hidden_norm_dispersion": _dispersion(all_norms),
            "learning_rate": learning_rate,
            "grad_norm": grad_norm,
            "epoch": (step + 1) / self.plan.steps_per_epoch,
        }
        if logps_c:
            metrics["logps_chosen_mean"] = float(acc.gather(torch.cat(logps_c)).mean())
        if logps_r:
            metrics["logps_rejected_mean"] = float(acc.gather(torch.cat(logps_r)).mean())
        return metrics

    def _gradient_sync(self, sync: bool):
        if sync:
            return nullcontext()
        return fsdp.gradient_sync(self.wrapped, False) if self.sharded else self.acc.no_sync(self.wrapped)

    def _diverged(self, step: int, components: dict[str, float]) -> None:
        where = f"the last good checkpoint is {self.last_checkpoint}" if self.last_checkpoint else \
            "no checkpoint was saved before it"
        shown = ", ".join(f"{k}={v:.6g}" for k, v in sorted(components.items()))
        raise TrainingDivergedError(
            f"Training diverged at step {step}: non-finite loss or gradient ({shown}). The update was not "
            f"applied and no state was saved for this step; {where}. Lower the learning rate, check the data "
            "(e.g. infinite margins), or use mixed_precision 'no'.", step, components)

    def evaluate(self) -> dict[str, float]:
        """Accuracy, BT loss and reward statistics on the eval pairs (no grad, dropout off), all processes."""
        acc, n = self.acc, len(self.eval_examples)
        ranks, rank = acc.num_processes, acc.process_index
        mine = list(range(rank, n, ranks))
        valid = [1.0] * len(mine) + [0.0] * (math.ceil(n / ranks) - len(mine))
        mine += [mine[-1] if mine else 0] * (len(valid) - len(mine))
        chosen, rejected, norms = [], [], []
        self.model.eval()
        with torch.no_grad(), acc.autocast():
            for chunk in self._inference_chunks(mine, self.eval_examples):
                out = self.model(**model_inputs(self._batch(chunk, self.eval_examples)))
                chosen.append(out.rewards[: len(chunk)].float())
                rejected.append(out.rewards[len(chunk):].float())
                norms.append(out.last_hidden.float().norm(dim=-1).reshape(2, -1).T)
        self.model.train()
        keep = acc.gather(torch.tensor(valid, device=acc.device)).bool()
        r_c, r_r = acc.gather(torch.cat(chosen))[keep], acc.gather(torch.cat(rejected))[keep]
        all_norms = acc.gather(torch.cat(norms))[keep].reshape(-1)
        diff = r_c - r_r
        all_rewards = torch.cat([r_c, r_r])
        return {
            "eval_accuracy": float((diff > 0).float().mean()),
            "eval_loss": float(torch.nn.functional.softplus(-diff).mean()),
            "eval_reward_mean": float(all_rewards.mean()),
            "eval_reward_std": float(all_rewards.std(correction=0)),
            "eval_margin_mean": float(diff.mean()),
            "eval_hidden_norm_dispersion": _dispersion(all_norms),
        }

    def _save(self, step: int) -> None:
        if not (fsdp.all_finite(self.model) if self.sharded else ckpt.all_finite(self.model)):
            self._diverged(step, {"non_finite_weights": float("nan")})
        extra = {"reference_logps": self.reference_table} if self.reference_table is not None else {}
        meta = {"config_hash": self.config_hash, "epoch": step / self.plan.steps_per_epoch,
                "config": self.cfg.to_dict()}
        self.last_checkpoint = ckpt.save_checkpoint(
            self.run_dir, step, accelerator=self.acc, model=self.model, optimizer=self.optimizer,
            scheduler=self.scheduler, meta=meta, history=self.history, extra=extra, keep=self.cfg.keep_checkpoints,
            sharded=self.sharded)

    def _report_truncation(self) -> None:
        """How many pairs max_length cut: a log line, and metrics at step 0 when the run starts afresh (a
        resumed run reported them when it first started)."""
        counts, lines = {}, []
        for prefix, name, examples in (("data.", "training", self.train_examples),
                                       ("eval_data.", "evaluation", self.eval_examples)):
            if examples:
                found = truncation_counts(examples, prefix)
                counts |= found
                lines.append(f"{found[prefix + 'truncated_pairs']} of {len(examples)} {name} pairs (prompt cut in "
                             f"{found[prefix + 'truncated_prompt_pairs']}, a response cut in "
                             f"{found[prefix + 'truncated_response_pairs']})")
        logger.info("Truncated to max_length %d (min_response_tokens %d): %s", self.cfg.max_length,
                    self.cfg.min_response_tokens, "; ".join(lines))
        if self.log_metrics is not None and self.start_step == 0:
            self.log_metrics(counts, 0)

    # -------------------------------------------------------------------------------------------- main
    def train(self) -> tuple[RewardModel, list[dict[str, Any]]]:
        cfg, acc = self.cfg, self.acc
        if acc.is_main_process:
            self._report_truncation()
        bar = tqdm(total=self.total_steps, initial=self.start_step, desc="reward model", dynamic_ncols=True,
                   disable=not (cfg.progress and acc.is_main_process))
        try:
            for step in range(self.start_step, self.total_steps):
                done = step + 1
                metrics = self._train_step(step)
                if self.eval_examples and ((cfg.eval_every and done % cfg.eval_every == 0)
                                           or done == self.total_steps):
                    metrics.update(self.evaluate())
                self.history.append({"step": done, **metrics})
                if cfg.checkpoint_every and (done % cfg.checkpoint_every == 0 or done == self.total_steps):
                    self._save(done)
                if acc.is_main_process:
                    bar.update(1)
                    bar.set_postfix(loss=f"{metrics['loss']:.4f}", acc=f"{metrics['accuracy']:.3f}")
                    if self.log_metrics is not None:
                        self.log_metrics(dict(metrics), done)
        finally:
            bar.close()
        acc.wait_for_everyone()
        model = self.skeleton.gather(self.model, cfg) if self.sharded else self.model
        model = finish_tuning(model, cfg) if model is not None else self.model
        acc.free_memory()
        return model, list(self.history)
