"""A folder of results keyed by a fingerprint of what made them: a PartitionedDataset that may be empty.

Kedro's ``PartitionedDataset`` refuses to load a folder with no partitions and reports it as missing, so a
node could never read a cache before the first result is in it. Here an empty (or absent) folder loads as
``{}`` and counts as existing: an empty cache is a valid state, not a missing input.

Loading gives ``{key: load_function}`` (only the partition a node asks for is read); saving ``{key: data}``
adds those partitions and leaves the others in place. With an atomic partition dataset
(``rewardlab.datasets.AtomicParquetDataset``) a run that dies mid-save never leaves a partial partition.

Catalog example::

    bon_sample_cache:
      type: rewardlab.datasets.keyed_cache_dataset.KeyedCacheDataset
      path: data/07_model_output/bon_sample_cache
      dataset:
        type: rewardlab.datasets.AtomicParquetDataset
      filename_suffix: .parquet
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kedro_datasets.partitions import PartitionedDataset


class KeyedCacheDataset(PartitionedDataset):
    """``partitions.PartitionedDataset`` that loads as ``{}`` when it holds no partition yet."""

    def load(self) -> dict[str, Callable[[], Any]]:
        if not self._list_partitions_fresh():
            return {}
        return super().load()

    def _exists(self) -> bool:
        return True

    def _list_partitions_fresh(self) -> list[str]:
        self._invalidate_caches()
        if not self._filesystem.exists(self._normalized_path):
            return []
        return self._list_partitions()
