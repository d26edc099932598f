"""Loaders that read their items as they go (DataLoader workers): ``StreamingLoader`` decodes
datasets of image files; ``ItemStream``, their common part, also streams a user's own datasets
(``python_dataset.PythonLoader``).

It keeps InMemoryLoader's contract: normalised float batches and labels on ``device``, an epoch
fixed by (seed, epoch), ``len()`` batches, training mode dropping the last incomplete batch.
Training draws a random-resized crop and a horizontal flip per image; evaluation resizes the
shorter side to ``image_size / eval_crop`` and takes the center crop.

Sharding is InMemoryLoader's: rank r reads the r-th slice of every global batch, so the union over
ranks of one step is the single-process batch. Each image's augmentation is seeded by its own
number drawn from the epoch's generator, so a batch is the same with any number of workers or
processes. Workers send uint8 images; conversion and normalisation happen on the device.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

if TYPE_CHECKING:
    from torchvision.transforms import v2

from ..errors import DataError
from .base import ArrayDataset, epoch_seed
from .image_folder import ImageFiles, open_image
from .loader import BatchLoader


# torchvision is imported where images are decoded: importing mate does not pay for it.


def train_transform(image_size: int, crop_min_scale: float, flip: bool) -> v2.Compose:
    from torchvision.transforms import v2

    steps = [v2.RandomResizedCrop(image_size, scale=(crop_min_scale, 1.0), antialias=True)]
    if flip:
        steps.append(v2.RandomHorizontalFlip())
    return v2.Compose(steps + [v2.PILToTensor()])


def eval_transform(image_size: int, eval_crop: float) -> v2.Compose:
    from torchvision.transforms import v2

    return v2.Compose([v2.Resize(round(image_size / eval_crop), antialias=True), v2.CenterCrop(image_size),
                       v2.PILToTensor()])


class DecodedImages(Dataset):
    """Item ``(index, seed)``: image ``index`` decoded as RGB and transformed (seeded when ``seed``).

    An unreadable file gives a blank image and the label ``-1 - index``, so the loader can name
    the file in the main process instead of surfacing a worker's traceback.
    """

    def __init__(self, files: ImageFiles, transform, image_size: int):
        self.paths, self.labels = files.paths, files.labels.tolist()
        self.transform, self.image_size = transform, image_size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, item: tuple[int, Optional[int]]) -> tuple[Tensor, int]:
        index, seed = item
        try:
            img = open_image(self.paths[index], "RGB")
            if seed is None:
                return self.transform(img), self.labels[index]
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                return self.transform(img), self.labels[index]
        except (DataError, OSError, ValueError):  # a file PIL reads but cannot decode in full
            return torch.zeros(3, self.image_size, self.image_size, dtype=torch.uint8), -1 - index


def _check(paths: list[str], labels: Tensor) -> None:
    bad = labels < 0
    if bad.any():
        path = paths[-1 - int(labels[bad][0])]
        open_image(path, "RGB")  # the file's own error, raised again in the main process
        raise DataError(f"cannot read image {path}")  # (when a second read succeeds)


def _loader(images: DecodedImages, batches: list, num_workers: int, pin_memory: bool) -> DataLoader:
    return DataLoader(images, batch_sampler=batches, num_workers=num_workers, pin_memory=pin_memory)


class ItemStream(BatchLoader):
    """What both streaming loaders share: each epoch's global batches of (item, augmentation seed)
    pairs, each rank's slice of every global batch, and DataLoader workers that read the items.

    ``items[(index, seed)]`` is one (image, label) pair; ``item_shape`` (C, H, W) shapes the empty
    batches a rank gets past the end of an evaluation.
    """

    seed_evaluation = False  # evaluation items are read with a seed fixed per item (random transforms)

    def __init__(self, items: Dataset, num_items: int, item_shape: tuple[int, int, int], batch_size: int,
                 device: torch.device | str, mean: Sequence[float], std: Sequence[float], train: bool, seed: int,
                 rank: int, world_size: int, num_workers: int):
        super().__init__(num_items, batch_size, device, mean, std, train, seed, rank, world_size)
        self.items, self.item_shape, self.num_workers = items, item_shape, num_workers

    def global_batches(self) -> list[list[tuple[int, Optional[int]]]]:
        """This epoch's global batches as (item index, augmentation seed) pairs."""
        n, b = self.num_items, self.batch_size
        if not self.train:
            return [[(i, i if self.seed_evaluation else None) for i in range(start, min(start + b, n))]
                    for start in range(0, n, b)]
        gen = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(n, generator=gen).tolist()
        seeds = torch.randint(0, 2**62, (n,), generator=gen).tolist()
        return [list(zip(order[i * b:(i + 1) * b], seeds[i * b:(i + 1) * b])) for i in range(len(self))]

    def check(self, labels: Tensor) -> None:
        """Stop with one message when a batch's labels say that items could not be read."""

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        shards = [g[self.rank * len(g) // self.world_size:(self.rank + 1) * len(g) // self.world_size]
                  for g in self.global_batches()]
        # Only a last, partial evaluation batch can leave a rank nothing; it still yields (empty).
        empty_tail = 0
        while shards and not shards[-1]:
            shards.pop()
            empty_tail += 1
        loader = _loader(self.items, shards, self.num_workers, self.device.type == "cuda")
        for x, y in loader:
            self.check(y)
            x = x.to(self.device, non_blocking=True)
            yield self.normalize(x), y.to(self.device, non_blocking=True)
        for _ in range(empty_tail):
            yield (torch.empty(0, *self.item_shape, device=self.device),
                   torch.empty(0, dtype=torch.long, device=self.device))


class StreamingLoader(ItemStream):
    def __init__(
        self,
        files: ImageFiles,
        batch_size: int,
        device: torch.device | str,
        mean: Sequence[float],
        std: Sequence[float],
        image_size: int,
        train: bool = False,
        flip: bool = False,
        crop_min_scale: float = 0.08,
        eval_crop: float = 0.875,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        num_workers: int = 4,
    ):
        if train:
            transform = train_transform(image_size, crop_min_scale, flip)
        else:
            transform = eval_transform(image_size, eval_crop)
        super().__init__(DecodedImages(files, transform, image_size), len(files), (3, image_size, image_size),
                         batch_size, device, mean, std, train, seed, rank, world_size, num_workers)
        self.files = files
        self.image_size = image_size
        self.images = self.items

    def check(self, labels: Tensor) -> None:
        _check(self.files.paths, labels)


def decode_to_memory(files: ImageFiles, image_size: int, num_workers: int = 4, batch_size: int = 256) -> ArrayDataset:
    """Every image decoded once, its shorter side resized to ``image_size`` and center-cropped."""
    from torchvision.transforms import v2

    transform = v2.Compose([v2.Resize(image_size, antialias=True), v2.CenterCrop(image_size), v2.PILToTensor()])
    images = DecodedImages(files, transform, image_size)
    n = len(files)
    batches = [[(i, None) for i in range(s, min(s + batch_size, n))] for s in range(0, n, batch_size)]
    out = torch.empty(n, 3, image_size, image_size, dtype=torch.uint8)
    start = 0
    for x, y in _loader(images, batches, num_workers, False):
        _check(files.paths, y)
        out[start:start + len(y)] = x
        start += len(y)
    return ArrayDataset(out, files.labels.clone())
