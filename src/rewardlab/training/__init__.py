"""Reward-model training: configuration, tokenized data and batching, the loop, resumable checkpoints."""

from rewardlab.training.checkpoint import CheckpointError
from rewardlab.training.config import TrainConfig
from rewardlab.training.data import BatchPlan, PairExample, collate_packed, collate_padded, tokenize_pairs
from rewardlab.training.loop import TrainingDivergedError, train_reward_model

__all__ = [
    "BatchPlan",
    "CheckpointError",
    "PairExample",
    "TrainConfig",
    "TrainingDivergedError",
    "collate_packed",
    "collate_padded",
    "launch_training",
    "run_training",
    "tokenize_pairs",
    "train_reward_model",
]


def __getattr__(name: str):
    # Imported on first use: `python -m rewardlab.training.launch` must not find the module half-imported.
    if name in ("launch_training", "run_training"):
        import importlib

        return getattr(importlib.import_module("rewardlab.training.launch"), name)
    raise AttributeError(f"module 'rewardlab.training' has no attribute {name!r}")
