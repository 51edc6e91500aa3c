"""Datasets (a registry by name), the synthetic benchmark, samplers, image store and augmentation."""
from .datasets import (DATASETS, ReIDDataset, Sample, build_dataset, dataset_from_config,
                       register_dataset)
from . import partial_datasets, reid_datasets  # noqa: F401  (register the public benchmarks)

__all__ = ["DATASETS", "ReIDDataset", "Sample", "build_dataset", "dataset_from_config",
           "register_dataset"]
