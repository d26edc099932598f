"""In-memory datasets: uint8 images (N x C x H x W) and int64 labels, their statistics, the
validation hold-out, and the seed that fixes each training epoch."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import torch
from torch import Tensor


@dataclass
class ArrayDataset:
    images: Tensor  # uint8, N x C x H x W
    labels: Tensor  # int64, N

    def __post_init__(self):
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError("images must be a uint8 N x C x H x W tensor")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError("labels must have one entry per image")
        self.labels = self.labels.long()

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: Tensor) -> "ArrayDataset":
        return ArrayDataset(self.images[indices], self.labels[indices])


@dataclass
class DatasetSplits:
    """What a dataset builder returns: the official train and test sets and their metadata."""

    name: str
    train: ArrayDataset
    test: ArrayDataset
    num_classes: int
    mean: Sequence[float]
    std: Sequence[float]
    class_names: Optional[Sequence[str]] = None
    source: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def in_channels(self) -> int:
        return self.train.images.shape[1]

    @property
    def input_size(self) -> int:
        return self.train.images.shape[2]


def validation_split(num_train: int, val_size: int, seed: int) -> tuple[Tensor, Tensor]:
    """Train and validation indices: a seeded random hold-out of ``val_size`` training images."""
    if not 0 <= val_size < num_train:
        raise ValueError(f"val_size must be in [0, {num_train}), got {val_size}")
    perm = torch.randperm(num_train, generator=torch.Generator().manual_seed(seed))
    return perm[val_size:].sort().values, perm[:val_size].sort().values


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one training epoch: its order, its augmentation and the model's own randomness
    (dropout) are drawn from it, so an epoch is the same whether it runs first or after a resume."""
    return seed * 1_000_003 + epoch
