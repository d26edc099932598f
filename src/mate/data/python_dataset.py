"""``data.name=python``: any map-style ``torch.utils.data.Dataset``, made by a factory of your own.

``data.factory=package.module:function`` names the factory. It is called as ``function()``, or as
``function(root=data.root)`` when ``data.root`` is set, and returns ``(train, test)`` or
``(train, val, test)``: datasets whose item ``i`` is ``(image, label)``, the image a float
C×H×W tensor with H = W, exactly as the network reads it (the dataset's own transforms resize,
augment and normalise it; mate adds nothing), the label an int in [0, number of classes).
The train dataset names its classes in ``classes`` (a list of names, as torchvision's datasets do;
a ``Subset`` of such a dataset is followed to it), which gives their number and their names.

The split rule is every dataset's: without a ``val`` set, ``data.val_size`` training items are held
out for validation (seeded by ``data.split_seed``, their indices saved in the run's split.json),
and read through the train dataset, its transforms included; return a ``val`` set of your own to
validate on other transforms. ``data.train_subset`` and ``data.test_subset`` apply as usual.

Items are streamed by DataLoader workers (``data.num_workers``). A training item is read with
torch's random generator seeded by a number drawn from the epoch's seed, so its augmentation is the
same with any number of workers or processes and after a resume; an evaluation item is read with a
seed fixed per item, so random transforms there give the same validation every epoch. Augmentation
drawn from another generator (Python's ``random``, NumPy) is not seeded by mate.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset, Subset

from ..errors import DataError
from ..plugins import load_object
from .base import DatasetSplits
from .registry import register_dataset
from .streaming import ItemStream

CONTRACT = ("returns (train, test) or (train, val, test) torch Datasets whose items are (image, label): "
            "a float CxHxW tensor with H = W, and an int class index")


@dataclass
class DatasetItems:
    """Items of a user's dataset that form one split: ``dataset[i]`` for each ``i`` in ``indices``.
    It plays the part ``ArrayDataset`` and ``ImageFiles`` play for the other datasets."""

    dataset: Any  # a map-style torch Dataset
    indices: Tensor  # int64

    def __post_init__(self):
        self.indices = torch.as_tensor(self.indices, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.indices)

    def subset(self, indices: Tensor) -> "DatasetItems":
        return DatasetItems(self.dataset, self.indices[torch.as_tensor(indices, dtype=torch.long)])


@dataclass
class PythonSplits(DatasetSplits):
    """Splits of a user's datasets. ``mean`` and ``std`` are None: the datasets' own transforms
    normalise their images, so there is nothing for mate (or an image file read for
    prediction) to normalise with."""

    channels: int = 3
    image_size: int = 32
    val: Optional[DatasetItems] = None  # the factory's own validation set (replaces the hold-out)

    @property
    def in_channels(self) -> int:
        return self.channels

    @property
    def input_size(self) -> int:
        return self.image_size


class SeededItems(Dataset):
    """Item ``(index, seed)``: item ``index`` of ``items``, read with torch's generator seeded by ``seed``
    (the generator outside is left as it was)."""

    def __init__(self, items: DatasetItems):
        self.dataset, self.indices = items.dataset, items.indices.tolist()

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: tuple[int, Optional[int]]) -> tuple[Tensor, int]:
        index, seed = item
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            image, label = self.dataset[self.indices[index]]
        return image, int(label)


class PythonLoader(ItemStream):
    """Batches of a user's dataset, as its transforms made them (no further normalisation), under
    the contract of every loader: seeded epochs, ``len()`` batches, per-rank slices."""

    seed_evaluation = True

    def __init__(self, items: DatasetItems, batch_size: int, device: torch.device | str,
                 item_shape: tuple[int, int, int], num_classes: int, train: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, num_workers: int = 4):
        super().__init__(SeededItems(items), len(items), item_shape, batch_size, device, (0.0,), (1.0,), train, seed,
                         rank, world_size, num_workers)
        self.num_classes = num_classes

    def normalize(self, images: Tensor) -> Tensor:
        return images.float()

    def check(self, labels: Tensor) -> None:
        bad = (labels < 0) | (labels >= self.num_classes)
        if bad.any():
            raise DataError(f"data.name=python: label {int(labels[bad][0])} is not a class index; the train "
                            f"dataset names {self.num_classes} classes, so labels are 0..{self.num_classes - 1}")


def _class_names(train: Any, factory: str) -> list[str]:
    dataset = train
    while getattr(dataset, "classes", None) is None and isinstance(dataset, Subset):
        dataset = dataset.dataset
    classes = getattr(dataset, "classes", None)
    if classes is None or isinstance(classes, str) or not isinstance(classes, Sequence) or not classes:
        raise DataError(f"data.factory={factory}: the train dataset has no 'classes' (a list of class names, as "
                        "torchvision's datasets have); set train.classes = [name, ...] in the factory")
    return [str(c) for c in classes]


def _probe(dataset: Any, split: str, factory: str) -> tuple[int, ...]:
    """The image shape of item 0 of ``dataset``, after checking that its items keep the contract."""
    if not hasattr(dataset, "__getitem__") or not hasattr(dataset, "__len__"):
        raise DataError(f"data.factory={factory}: the {split} set is a {type(dataset).__name__}, not a map-style "
                        f"Dataset (len and [i]); the factory {CONTRACT}")
    if len(dataset) == 0:
        raise DataError(f"data.factory={factory}: the {split} set is empty")
    item = SeededItems(DatasetItems(dataset, [0]))[(0, 0)]
    ok = isinstance(item, (tuple, list)) and len(item) == 2
    image, label = item if ok else (None, None)
    if not (ok and isinstance(image, Tensor) and image.is_floating_point() and image.dim() == 3
            and image.shape[1] == image.shape[2] and isinstance(label, (int, Tensor)) and not isinstance(label, bool)):
        got = (f"({type(image).__name__}{list(image.shape) if isinstance(image, Tensor) else ''} "
               f"{image.dtype if isinstance(image, Tensor) else ''}, {type(label).__name__})" if ok
               else type(item).__name__)
        raise DataError(f"data.factory={factory}: item 0 of the {split} set is {got}; the factory {CONTRACT} "
                        "(end the transforms with e.g. ToTensor() and Normalize())")
    return tuple(image.shape)


@register_dataset("python")
def python_dataset(root: Optional[str] = None, download: bool = True, factory: Optional[str] = None) -> PythonSplits:
    """The datasets ``factory`` (``package.module:function``) returns; see the module's docstring."""
    if not factory:
        raise DataError("data.name=python needs data.factory=package.module:function, a function that " + CONTRACT)
    make = load_object(factory, "data.factory")
    if not callable(make):
        raise DataError(f"data.factory={factory} is a {type(make).__name__}, not a function")
    params = inspect.signature(make).parameters
    takes_root = "root" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
    if root is not None and not takes_root:
        raise DataError(f"data.root is set, so data.factory={factory} is called with root=...; give it a 'root' "
                        "argument, or leave data.root unset")
    # The factory and the probes run on a copy of torch's generator: what they draw (a random split,
    # random transforms) leaves the run's own draws, such as the model's initialisation, as they were.
    with torch.random.fork_rng(devices=[]):
        sets = make(root=root) if root is not None else make()
        if not isinstance(sets, (tuple, list)) or len(sets) not in (2, 3):
            raise DataError(f"data.factory={factory} returned a {type(sets).__name__}; it {CONTRACT}")
        train, val, test = (sets[0], None, sets[1]) if len(sets) == 2 else sets
        shape = _probe(test, "test", factory)
        for split, dataset in (("train", train), ("val", val)):
            if dataset is not None and _probe(dataset, split, factory) != shape:
                raise DataError(f"data.factory={factory}: the {split} images are {list(_probe(dataset, split, factory))}, "
                                f"the test images {list(shape)}; every split must give the network one shape")
    classes = _class_names(train, factory)

    def items(dataset: Any) -> DatasetItems:
        return DatasetItems(dataset, torch.arange(len(dataset)))

    return PythonSplits("python", items(train), items(test), len(classes), None, None, classes, factory,
                        channels=shape[0], image_size=shape[1], val=items(val) if val is not None else None)
