"""Data for a run: the dataset from the registry, the validation split, and the loaders.

In-memory datasets (and image-file datasets decoded into memory) get DeviceLoaders; image-file
datasets too large for that are streamed from disk by StreamingLoaders, which keep the same
contract (seeded epochs, ``len``, per-rank slices of every global batch).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Optional, Union

import torch
from torch import Tensor

from ..config import Config, DataConfig
from ..data import (DatasetSplits, DeviceLoader, FolderSplits, ImageFiles, StreamingLoader, decode_to_memory,
                    load_dataset, validation_split)
from ..errors import ConfigError

Loader = Union[DeviceLoader, StreamingLoader]
IN_MEMORY_MAX_SIDE = 64  # auto: small images get the in-memory, CIFAR-style recipe
IN_MEMORY_MAX_BYTES = 4 * 2**30


@dataclass
class DataBundle:
    splits: DatasetSplits
    train: Loader
    val: Optional[Loader]
    test: Loader
    val_indices: Tensor  # held out of the training set; empty when the dataset has its own validation split


def load_splits(config: Config) -> DatasetSplits:
    """The config's dataset, image-file datasets at ``data.image_size``: the shapes a model is built for."""
    d = config.data
    splits = load_dataset(d.name, root=d.root, download=d.download)
    if isinstance(splits, FolderSplits) and d.image_size:
        splits = dataclasses.replace(splits, image_size=d.image_size)
    return splits


def build_data(config: Config, device: torch.device, rank: int = 0, world_size: int = 1) -> DataBundle:
    d = config.data
    splits = load_splits(config)
    own_val = getattr(splits, "val", None)
    if own_val is not None:
        train_idx, val_idx = torch.arange(len(splits.train)), torch.empty(0, dtype=torch.long)
    else:
        if d.val_size >= len(splits.train):
            raise ConfigError(f"data.val_size={d.val_size} leaves no training images ({len(splits.train)} in all)")
        train_idx, val_idx = validation_split(len(splits.train), d.val_size, d.split_seed)
    if d.train_subset is not None:
        train_idx = train_idx[: d.train_subset]
    test = splits.test
    if d.test_subset is not None:
        test = test.subset(torch.arange(min(d.test_subset, len(test))))
    if d.batch_size > len(train_idx):
        raise ConfigError(f"data.batch_size={d.batch_size} is larger than the {len(train_idx)} training images")
    train, val = splits.train.subset(train_idx), own_val if own_val is not None else splits.train.subset(val_idx)
    has_val = len(val) > 0
    common = dict(device=device, mean=splits.mean, std=splits.std, rank=rank, world_size=world_size)

    if isinstance(splits, FolderSplits) and not _in_memory(d, splits.image_size, len(train) + len(val) + len(test)):
        stream = dict(common, image_size=splits.image_size, num_workers=d.num_workers, eval_crop=d.eval_crop)
        return DataBundle(
            splits,
            StreamingLoader(train, d.batch_size, train=True, flip=d.flip, crop_min_scale=d.crop_min_scale,
                            seed=config.run.seed, **stream),
            StreamingLoader(val, d.eval_batch_size, **stream) if has_val else None,
            StreamingLoader(test, d.eval_batch_size, **stream),
            val_idx,
        )
    if isinstance(splits, FolderSplits):
        train, val, test = (_decode(files, splits.image_size, d.num_workers) for files in (train, val, test))
    return DataBundle(
        splits,
        DeviceLoader(train, d.batch_size, train=True, crop_padding=d.crop_padding, flip=d.flip,
                     seed=config.run.seed, **common),
        DeviceLoader(val, d.eval_batch_size, **common) if has_val else None,
        DeviceLoader(test, d.eval_batch_size, **common),
        val_idx,
    )


def _in_memory(d: DataConfig, image_size: int, num_images: int) -> bool:
    if d.in_memory != "auto":
        return bool(d.in_memory)
    return image_size <= IN_MEMORY_MAX_SIDE and num_images * 3 * image_size**2 <= IN_MEMORY_MAX_BYTES


def _decode(files: ImageFiles, image_size: int, num_workers: int):
    return decode_to_memory(files, image_size, num_workers) if len(files) else files
