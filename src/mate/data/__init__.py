"""Datasets and loaders. Importing this package registers every dataset."""
from . import cifar, fashion_mnist  # noqa: F401  (registers the datasets)
from .base import ArrayDataset, DatasetSplits, validation_split
from .loader import DeviceLoader, random_crop_flip
from .registry import DATASETS, list_datasets, load_dataset, register_dataset

__all__ = ["ArrayDataset", "DatasetSplits", "DeviceLoader", "random_crop_flip", "validation_split",
           "DATASETS", "list_datasets", "load_dataset", "register_dataset"]
