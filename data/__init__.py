"""Datasets (a registry by name), the synthetic benchmark, samplers, image store and augmentation."""
from .datasets import DATASETS, ReIDDataset, Sample, build_dataset, dataset_from_config, register_dataset

__all__ = ["DATASETS", "ReIDDataset", "Sample", "build_dataset", "dataset_from_config", "register_dataset"]
