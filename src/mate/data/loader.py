"""A loader for datasets that fit in memory: the whole set as uint8 on the training device.

Each epoch draws a permutation and augmentation offsets from a generator seeded by
(seed, epoch), so an epoch is the same whether it runs first or after a resume, on one process
or sharded across ranks. Random crop (with zero padding) and horizontal flip are done on the
whole batch with two gathers, which is what keeps small-image training fast on any device.
"""
from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ArrayDataset, epoch_seed


def random_crop_flip(images: Tensor, dy: Tensor, dx: Tensor, flip: Tensor, padding: int) -> Tensor:
    """Per-sample crop at offsets (dy, dx) of the zero-padded batch, then flip where ``flip``."""
    b, c, h, w = images.shape
    if padding > 0:
        padded = F.pad(images, (padding, padding, padding, padding))
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        padded = padded.gather(2, rows.expand(b, c, h, w + 2 * padding))
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        images = padded.gather(3, cols.expand(b, c, h, w))
    return torch.where(flip[:, None, None, None], images.flip(3), images)


class BatchLoader:
    """What every loader shares: epochs, global batches of ``batch_size`` split across ranks
    (rank r gets its r-th slice), and normalisation on the training device."""

    def __init__(self, num_items: int, batch_size: int, device: torch.device | str, mean: Sequence[float],
                 std: Sequence[float], train: bool, seed: int, rank: int, world_size: int):
        if batch_size % world_size:
            raise ValueError(f"batch size {batch_size} is not divisible by {world_size} processes")
        self.num_items = num_items
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.train = train
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        shape = (1, -1, 1, 1)
        self.mean = torch.tensor(mean, device=self.device).view(shape) * 255.0
        self.std = torch.tensor(std, device=self.device).view(shape) * 255.0
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        """Training drops the last incomplete batch; evaluation keeps it."""
        n = self.num_items
        return n // self.batch_size if self.train else math.ceil(n / self.batch_size)

    def normalize(self, images: Tensor) -> Tensor:
        return (images.float() - self.mean) / self.std


class InMemoryLoader(BatchLoader):
    """Batches of normalised float images and labels from a dataset held whole on ``device``.

    Training mode shuffles, augments and drops the last incomplete batch. ``rank`` and
    ``world_size`` shard every global batch: rank r gets its r-th slice, so the union over
    ranks of one step is exactly the single-process batch.
    """

    def __init__(
        self,
        data: ArrayDataset,
        batch_size: int,
        device: torch.device | str,
        mean: Sequence[float],
        std: Sequence[float],
        train: bool = False,
        crop_padding: int = 0,
        flip: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(len(data), batch_size, device, mean, std, train, seed, rank, world_size)
        self.images = data.images.to(self.device)
        self.labels = data.labels.to(self.device)
        self.crop_padding = crop_padding if train else 0
        self.flip = flip and train

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        n = len(self.labels)
        if not self.train:
            for start in range(0, n, self.batch_size):
                yield self._shard(self.normalize(self.images[start:start + self.batch_size]),
                                  self.labels[start:start + self.batch_size])
            return
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        perm = torch.randperm(n, generator=gen)
        p = self.crop_padding
        for i in range(len(self)):
            idx = perm[i * self.batch_size:(i + 1) * self.batch_size]
            b = len(idx)
            dy = torch.randint(0, 2 * p + 1, (b,), generator=gen)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=gen)
            flip = torch.rand(b, generator=gen) < 0.5 if self.flip else torch.zeros(b, dtype=torch.bool)
            lo, hi = self.rank * b // self.world_size, (self.rank + 1) * b // self.world_size
            idx, dy, dx, flip = (t[lo:hi].to(self.device) for t in (idx, dy, dx, flip))
            images = random_crop_flip(self.images[idx], dy, dx, flip, p)
            yield self.normalize(images), self.labels[idx]

    def _shard(self, x: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        if self.world_size == 1:
            return x, y
        b = len(y)
        lo, hi = self.rank * b // self.world_size, (self.rank + 1) * b // self.world_size
        return x[lo:hi], y[lo:hi]
