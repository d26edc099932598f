"""Datasets and loaders. Importing this package registers every dataset."""
# Importing a dataset module registers its datasets.
from . import cifar, cub, fashion_mnist, fgvc_aircraft, image_folder, stanford_dogs, tiny_imagenet  # noqa: F401
from .base import ArrayDataset, DatasetSplits, validation_split
from .image_folder import FolderSplits, ImageFiles
from .loader import DeviceLoader, random_crop_flip
from .streaming import StreamingLoader, decode_to_memory
from .registry import DATASETS, list_datasets, load_dataset, register_dataset

__all__ = ["ArrayDataset", "DatasetSplits", "DeviceLoader", "random_crop_flip", "validation_split",
           "FolderSplits", "ImageFiles", "StreamingLoader", "decode_to_memory",
           "DATASETS", "list_datasets", "load_dataset", "register_dataset"]
