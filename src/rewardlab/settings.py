"""Kedro project settings."""

from rewardlab.config_loader import ProjectConfigLoader
from rewardlab.console import ignore_known_warnings
from rewardlab.hooks import (MlflowCheckpointHooks, MlflowExportHooks, MlflowRunDescriptionHooks, MlflowRunOwnerHooks,
                             RunGuardHooks, RunSummaryHooks, SignalHooks)
from rewardlab.own_versions import OwnVersionHooks

# The `kedro` CLI filters these as it starts; sessions started from Python (notebooks) come through here.
ignore_known_warnings()

# kedro-mlflow registers its own hook through its entry point. SignalHooks stays last: of the hooks that run
# last (`trylast`), pluggy calls the last registered last; of those that run first (`tryfirst`), the last
# registered first: RunGuardHooks checks the parameters before MlflowRunDescriptionHooks names the run by them.
HOOKS = (OwnVersionHooks(), MlflowRunDescriptionHooks(), RunGuardHooks(), MlflowCheckpointHooks(), MlflowExportHooks(),
         MlflowRunOwnerHooks(), RunSummaryHooks(), SignalHooks())

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
