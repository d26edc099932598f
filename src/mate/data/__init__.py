"""Datasets, their splits and loaders. Importing this package registers every dataset."""
# Importing a dataset module registers its datasets.
from . import (cifar, cub, fashion_mnist, fgvc_aircraft, image_folder, python_dataset, stanford_dogs,  # noqa: F401
               tiny_imagenet)
from .base import ArrayDataset, DatasetSplits, epoch_seed, validation_split
from .build import DataBundle, build_data, dataset_info, split_dataset
from .image_folder import FolderSplits, ImageFiles
from .loader import InMemoryLoader, random_crop_flip
from .python_dataset import DatasetItems, PythonLoader, PythonSplits
from .streaming import StreamingLoader, decode_to_memory
from .registry import DATASETS, DatasetInfo, list_datasets, load_dataset, register_dataset

__all__ = ["ArrayDataset", "DatasetSplits", "InMemoryLoader", "random_crop_flip", "validation_split", "epoch_seed",
           "FolderSplits", "ImageFiles", "StreamingLoader", "decode_to_memory",
           "DatasetItems", "PythonLoader", "PythonSplits",
           "DataBundle", "build_data", "split_dataset", "dataset_info",
           "DATASETS", "DatasetInfo", "list_datasets", "load_dataset", "register_dataset"]
