"""Overlapping runs of one project: a run loads back what it saved, not a newer version another run saved."""

from __future__ import annotations

import pandas as pd
from kedro.io import DataCatalog

from rewardlab.own_versions import OwnVersionHooks


def _catalog(tmp_path, save_version: str) -> DataCatalog:
    """A run's catalog: Kedro gives every save of a run the run's start time as version."""
    config = {"pairs": {"type": "rewardlab.datasets.AtomicParquetDataset",
                        "filepath": str(tmp_path / "pairs.parquet"), "versioned": True}}
    return DataCatalog.from_config(config, save_version=save_version)


def test_a_run_that_started_first_and_saved_last_loads_its_own_version(tmp_path):
    early, late, unpinned = (_catalog(tmp_path, f"2026-01-01T00.00.0{second}.000Z") for second in (0, 2, 1))
    mine, theirs, other = (pd.DataFrame({"seed": [seed]}) for seed in (0, 1, 2))
    hooks = OwnVersionHooks()
    hooks.after_catalog_created(early)
    late.save("pairs", theirs)  # the run that started later saves first

    early.save("pairs", mine)
    hooks.after_dataset_saved("pairs")
    unpinned.save("pairs", other)  # without the hook, a run loads the newest version: the later run's
    assert unpinned.load("pairs")["seed"].tolist() == [1]
    assert early.load("pairs")["seed"].tolist() == [0]


def test_the_project_registers_the_hook():
    from rewardlab.settings import HOOKS

    assert any(isinstance(hook, OwnVersionHooks) for hook in HOOKS)
