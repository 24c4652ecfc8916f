"""`${project_path:}` in the configuration names the project that holds conf/, whatever the working directory."""

from __future__ import annotations

from pathlib import Path

from rewardlab.config_loader import ProjectConfigLoader, project_root
from rewardlab.settings import CONFIG_LOADER_ARGS, CONFIG_LOADER_CLASS


def _project(root: Path) -> Path:
    (root / "conf" / "base").mkdir(parents=True)
    (root / "conf" / "local").mkdir()
    (root / "conf" / "base" / "mlflow.yml").write_text(
        "server:\n  mlflow_tracking_uri: sqlite:///${project_path:}/mlflow.db\n")
    return root


def test_project_path_is_the_folder_holding_conf(tmp_path, monkeypatch):
    assert CONFIG_LOADER_CLASS is ProjectConfigLoader
    first, second = _project(tmp_path / "a"), _project(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    loader = CONFIG_LOADER_CLASS(conf_source=str(first / "conf"), **CONFIG_LOADER_ARGS)
    assert loader["mlflow"]["server"]["mlflow_tracking_uri"] == f"sqlite:///{first.resolve().as_posix()}/mlflow.db"
    other = CONFIG_LOADER_CLASS(conf_source=str(second / "conf"), **CONFIG_LOADER_ARGS)  # the latest session's
    assert other["mlflow"]["server"]["mlflow_tracking_uri"].endswith("/b/mlflow.db")


def test_configuration_without_a_project_folder_stays_relative_to_the_working_directory(tmp_path, monkeypatch):
    archive = tmp_path / "conf.tar.gz"
    archive.write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    assert project_root(archive) == tmp_path
    assert project_root(tmp_path / "p" / "conf") == tmp_path  # not there (yet): no project to anchor to
    (tmp_path / "p" / "conf").mkdir(parents=True)
    assert project_root(tmp_path / "p" / "conf") == (tmp_path / "p").resolve()
