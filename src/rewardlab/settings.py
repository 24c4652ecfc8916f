"""Kedro project settings."""

from rewardlab.config_loader import ProjectConfigLoader
from rewardlab.hooks import MlflowCheckpointHooks, RunGuardHooks, SignalHooks

# kedro-mlflow registers its own hook through its entry point.
HOOKS = (RunGuardHooks(), MlflowCheckpointHooks(), SignalHooks())

# OmegaConfigLoader with `${project_path:}`, which mlflow.yml uses to keep the tracking store in the project.
CONFIG_LOADER_CLASS = ProjectConfigLoader
CONFIG_LOADER_ARGS = {
    "base_env": "base",
    "default_run_env": "local",
    # Environments (local, gpu) override single keys of a pipeline's parameters, not whole blocks.
    "merge_strategy": {"parameters": "soft"},
    "config_patterns": {
        "parameters": ["parameters*", "parameters*/**", "**/parameters*"],
        "mlflow": ["mlflow*", "mlflow*/**"],
    },
}
