"""GRM training nodes: label noise, then one reward model (or an ensemble) per run, then its export as a standard
Hugging Face model."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from rewardlab.config import GrmTrainConfig
from rewardlab.noise import inject_label_noise
from rewardlab.pipelines.tracking import log_step_metrics, metrics_for_mlflow, set_run_tags
from rewardlab.run_identity import run_identity

logger = logging.getLogger(__name__)


def inject_noise(train_pairs: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """Swap chosen and rejected for a seeded fraction of pairs and record which ones."""
    cfg = GrmTrainConfig.from_dict(params, "grm_train")
    noisy, record = inject_label_noise(train_pairs, cfg.noise_rate, seed=cfg.noise_seed)
    swapped = int(record["swapped"].sum())
    logger.info("Label noise: swapped %d of %d pairs (rate %.3f)", swapped, len(record), cfg.noise_rate)
    metrics = {"rate": cfg.noise_rate, "swapped": swapped, "pairs": len(record)}
    return noisy, record, metrics_for_mlflow(metrics)


def train_reward_models(
    base_model_path: str,
    train_pairs: pd.DataFrame,
    validation_pairs: pd.DataFrame,
    parameters: dict[str, Any],
    slurm_settings: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """Train the run's variant (K members for an ensemble); resumable from `state_dir`.

    `slurm_settings` (conf/slurm.yml) are the job settings of `launcher: slurm`; other launchers ignore them."""
    from transformers import AutoTokenizer

    from rewardlab.modeling import RewardEnsemble

    cfg = GrmTrainConfig.from_dict(parameters.get("grm_train"), "grm_train")
    identity = run_identity(parameters)
    set_run_tags(identity.tags())
    tokenizer = AutoTokenizer.from_pretrained(base_model_path)
    slurm = None
    if cfg.train_config(0).launcher == "slurm":
        from rewardlab.slurm import SlurmConfig

        slurm = SlurmConfig.from_dict(slurm_settings or {}, path="slurm")
    members, histories = [], []
    for member in range(cfg.ensemble_size):
        state_dir = Path(cfg.state_dir) / identity.label / f"member{member}"
        logger.info("Training %s (member %d of %d); resumable state in %s", identity.label, member + 1,
                    cfg.ensemble_size, state_dir)
        model, history = _train_one(base_model_path, tokenizer, train_pairs, validation_pairs,
                                    cfg.train_config(member), state_dir,
                                    prefix="" if cfg.ensemble_size == 1 else f"member{member}.", slurm=slurm)
        members.append(model)
        histories.append(pd.DataFrame(history).assign(member=member))
    model = members[0] if cfg.ensemble_size == 1 else RewardEnsemble(members, reduce=cfg.ensemble_reduce)
    return {"model": model, "tokenizer": tokenizer}, pd.concat(histories, ignore_index=True)


def export_trained_model(reward_model_path: str, training_history: pd.DataFrame, train_pairs: pd.DataFrame,
                         validation_pairs: pd.DataFrame, parameters: dict[str, Any]):
    """The trained reward model as a standard sequence-classification model (`rewardlab.export`), written when the
    dataset saves it; for an MLP head, an ensemble or `grm_train.export: false`, a directory holding only a
    README.md that says why. The training reward statistics are those of the final evaluation on the
    validation pairs (the training history's last `eval_reward_mean` / `eval_reward_std`)."""
    from rewardlab.export import RewardModelExport, export_problem, final_evaluation

    cfg = GrmTrainConfig.from_dict(parameters.get("grm_train"), "grm_train")
    reason = export_problem(reward_model_path) if cfg.export else "Export is turned off (`grm_train.export: false`)."
    if reason:
        logger.warning("The reward model is not exported: %s", reason)
        return RewardModelExport(reward_model_path, skip_reason=reason)
    identity = run_identity(parameters)
    evaluation = final_evaluation(training_history)
    sources = ", ".join(sorted(map(str, train_pairs["source"].unique()))) if "source" in train_pairs else "unknown"
    provenance = {"variant": identity.variant, "noise_rate": identity.noise_rate, "seed": identity.seed,
                  "run_label": identity.label,
                  "training_data": f"{sources}: {len(train_pairs)} training pairs ({100 * cfg.noise_rate:.3g}% of "
                                   f"them with chosen and rejected swapped), {len(validation_pairs)} validation pairs"}
    return RewardModelExport(reward_model_path, reward_mean=evaluation.get("eval_reward_mean"),
                             reward_std=evaluation.get("eval_reward_std"), provenance=provenance, metrics=evaluation)


def _train_one(base_model_path, tokenizer, train_pairs, validation_pairs, cfg, state_dir, prefix, slurm=None):
    """One reward model, in this process or in the processes (or Slurm job) `run_training` launches."""
    from rewardlab.training.launch import run_training

    def log(metrics: dict[str, float], step: int) -> None:
        log_step_metrics({f"{prefix}{k}": v for k, v in metrics.items()}, step)

    return run_training(base_model_path, tokenizer, train_pairs, validation_pairs, cfg, state_dir, log, slurm=slurm)
