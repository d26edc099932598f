"""Data for a run: the dataset from the registry, the validation hold-out, and the loaders."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
from torch import Tensor

from ..config import Config
from ..data import DatasetSplits, DeviceLoader, load_dataset, validation_split
from ..errors import ConfigError


@dataclass
class DataBundle:
    splits: DatasetSplits
    train: DeviceLoader
    val: Optional[DeviceLoader]
    test: DeviceLoader
    val_indices: Tensor


def build_data(config: Config, device: torch.device, rank: int = 0, world_size: int = 1) -> DataBundle:
    d = config.data
    splits = load_dataset(d.name, root=d.root, download=d.download)
    if d.val_size >= len(splits.train):
        raise ConfigError(f"data.val_size={d.val_size} leaves no training images ({len(splits.train)} in all)")
    train_idx, val_idx = validation_split(len(splits.train), d.val_size, d.split_seed)
    if d.train_subset is not None:
        train_idx = train_idx[: d.train_subset]
    test = splits.test if d.test_subset is None else splits.test.subset(torch.arange(min(d.test_subset, len(splits.test))))
    if d.batch_size > len(train_idx):
        raise ConfigError(f"data.batch_size={d.batch_size} is larger than the {len(train_idx)} training images")
    common = dict(device=device, mean=splits.mean, std=splits.std, rank=rank, world_size=world_size)
    train = DeviceLoader(splits.train.subset(train_idx), d.batch_size, train=True, crop_padding=d.crop_padding,
                         flip=d.flip, seed=config.run.seed, **common)
    val = DeviceLoader(splits.train.subset(val_idx), d.eval_batch_size, **common) if d.val_size else None
    return DataBundle(splits, train, val, DeviceLoader(test, d.eval_batch_size, **common), val_idx)
