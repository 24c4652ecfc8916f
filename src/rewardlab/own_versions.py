"""A run loads back the versions it saved itself, even while other runs save to the same project.

Kedro loads a versioned dataset's newest version. All saves of one run carry the run's start time as their
version, so when runs of one project overlap (`kedro grid --executor slurm` runs its points at once), a run
that started earlier and saves later would load the other run's newer version after its own save: the noisy
pairs or the reward model of another grid point. `OwnVersionHooks` pins each dataset a run saves to that
run's version for the rest of the run; datasets it only reads still load the newest version.
"""

from __future__ import annotations

from typing import Any

from kedro.framework.hooks import hook_impl
from kedro.io.core import AbstractVersionedDataset, Version


class OwnVersionHooks:
    def __init__(self) -> None:
        self._catalog: Any = None

    @hook_impl
    def after_catalog_created(self, catalog: Any) -> None:
        self._catalog = catalog

    @hook_impl
    def after_dataset_saved(self, dataset_name: str) -> None:
        dataset = self._catalog.get(dataset_name) if self._catalog is not None else None
        if not isinstance(dataset, AbstractVersionedDataset):
            return
        version = dataset._version  # Kedro keeps a dataset's (load, save) versions only here
        if version is not None and version.load is None:
            dataset._version = Version(load=dataset.resolve_save_version(), save=version.save)
