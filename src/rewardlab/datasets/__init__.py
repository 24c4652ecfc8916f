"""Custom Kedro datasets."""

from rewardlab.datasets.atomic_datasets import AtomicJSONDataset, AtomicParquetDataset
from rewardlab.datasets.pair_source_dataset import PairSourceDataset
from rewardlab.datasets.pretrained_dataset import PretrainedDataset

__all__ = ["AtomicJSONDataset", "AtomicParquetDataset", "PairSourceDataset", "PretrainedDataset"]
