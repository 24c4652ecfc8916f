"""Kedro's OmegaConfigLoader plus `${project_path:}`, the project's root directory.

Kedro finds the project from any directory inside it and makes the catalog's relative paths absolute, but
kedro-mlflow leaves a sqlite URI (`sqlite:///mlflow.db`) and an experiment's artifact location relative to the
directory `kedro` was started from: a run started in `notebooks/` would open a second, empty tracking store
there. mlflow.yml anchors both at `${project_path:}` instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.config import OmegaConfigLoader
from omegaconf import OmegaConf


def project_root(conf_source: str | Path) -> Path:
    """The directory that holds the configuration folder (`<project>/conf`); a configuration shipped as an
    archive or kept elsewhere has no project around it, so paths stay relative to the working directory."""
    source = Path(conf_source).resolve()
    return source.parent if source.is_dir() else Path.cwd()


class ProjectConfigLoader(OmegaConfigLoader):
    def __init__(self, conf_source: str, *args: Any, **kwargs: Any) -> None:
        super().__init__(conf_source, *args, **kwargs)
        root = project_root(conf_source).as_posix()
        # OmegaConf resolvers are global: the latest loader (one per Kedro session) names its own project.
        OmegaConf.register_resolver("project_path", lambda: root, replace=True)
