"""Data for a run: the dataset from the registry, its splits and subsets, and the loaders.

``build_data(config.data, device, seed)`` loads ``data.name``, holds ``data.val_size`` training
images out for validation (unless the dataset has its own validation split), keeps the
``data.train_subset`` and ``data.test_subset`` subsets, and picks the loaders. In-memory datasets (and image-file datasets
decoded into memory) get InMemoryLoaders; image-file datasets too large for that are streamed
from disk by StreamingLoaders, which keep the same contract (seeded epochs, ``len``, per-rank
slices of every global batch). A user's own datasets (``data.name=python``) are always streamed,
through their own transforms (``python_dataset``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional, Protocol, Union

import torch
from torch import Tensor

from ..errors import ConfigError
from ..runtime import usable_cpus
from .base import ArrayDataset, DatasetSplits, validation_split
from .image_folder import FolderSplits, ImageFiles
from .loader import InMemoryLoader
from .python_dataset import DatasetItems, PythonLoader, PythonSplits
from .registry import DatasetInfo, load_dataset, registered_info
from .streaming import StreamingLoader, decode_to_memory

Loader = Union[InMemoryLoader, StreamingLoader, PythonLoader]
Split = Union[ArrayDataset, ImageFiles, DatasetItems]
IN_MEMORY_MAX_SIDE = 64  # auto: small images get the in-memory, CIFAR-style recipe
IN_MEMORY_MAX_BYTES = 4 * 2**30
DEFAULT_EVAL_CROP = 0.875  # data.eval_crop's default: the 224-pixel center crop of a 256-pixel resize
MAX_DEFAULT_WORKERS = 4


class DataOptions(Protocol):
    """What building a run's data reads: the config's data section (``config.data``)."""

    name: str
    root: Optional[str]
    download: bool
    val_size: int
    split_seed: int
    train_subset: Optional[int]
    test_subset: Optional[int]
    batch_size: int
    eval_batch_size: int
    crop_padding: int
    flip: bool
    image_size: Optional[int]
    in_memory: Literal["auto", True, False]
    num_workers: Optional[int]
    crop_min_scale: float
    eval_crop: float
    factory: Optional[str]


@dataclass
class DataBundle:
    splits: DatasetSplits
    train: Loader
    val: Optional[Loader]
    test: Loader
    val_indices: Tensor  # held out of the training set; empty when the dataset has its own validation split


def build_data(d: DataOptions, device: torch.device | str, seed: int = 0, rank: int = 0,
               world_size: int = 1) -> DataBundle:
    """The run's splits and loaders; ``seed`` (the run's) fixes every training epoch."""
    splits = load_configured(d)
    train, val, test, val_idx = split_dataset(splits, d)
    if d.batch_size > len(train):
        raise ConfigError(f"data.batch_size={d.batch_size} is larger than the {len(train)} training images")
    has_val = len(val) > 0
    if isinstance(splits, PythonSplits):
        shape = (splits.in_channels, splits.input_size, splits.input_size)
        stream = dict(device=device, item_shape=shape, num_classes=splits.num_classes, rank=rank,
                      world_size=world_size, num_workers=d.num_workers)
        return DataBundle(
            splits,
            PythonLoader(train, d.batch_size, train=True, seed=seed, **stream),
            PythonLoader(val, d.eval_batch_size, **stream) if has_val else None,
            PythonLoader(test, d.eval_batch_size, **stream),
            val_idx,
        )
    common = dict(device=device, mean=splits.mean, std=splits.std, rank=rank, world_size=world_size)

    streamed = isinstance(splits, FolderSplits) and not _in_memory(d, splits.image_size,
                                                                    len(train) + len(val) + len(test))
    if not streamed and d.eval_crop != DEFAULT_EVAL_CROP:
        how = ("stream it with data.in_memory=false to evaluate on center crops" if isinstance(splits, FolderSplits)
               else "leave data.eval_crop unset")
        raise ConfigError(f"data.eval_crop={d.eval_crop} applies to streamed evaluation only: {d.name} is held in "
                          f"memory here and evaluated on whole images; {how}")
    workers = resolve_num_workers(d.num_workers)
    if streamed:
        stream = dict(common, image_size=splits.image_size, num_workers=workers, eval_crop=d.eval_crop)
        return DataBundle(
            splits,
            StreamingLoader(train, d.batch_size, train=True, flip=d.flip, crop_min_scale=d.crop_min_scale,
                            seed=seed, **stream),
            StreamingLoader(val, d.eval_batch_size, **stream) if has_val else None,
            StreamingLoader(test, d.eval_batch_size, **stream),
            val_idx,
        )
    if isinstance(splits, FolderSplits):
        train, val, test = (_decode(files, splits.image_size, workers) for files in (train, val, test))
    return DataBundle(
        splits,
        InMemoryLoader(train, d.batch_size, train=True, crop_padding=d.crop_padding, flip=d.flip,
                       seed=seed, **common),
        InMemoryLoader(val, d.eval_batch_size, **common) if has_val else None,
        InMemoryLoader(test, d.eval_batch_size, **common),
        val_idx,
    )


def load_configured(d: DataOptions) -> DatasetSplits:
    """``data.name`` loaded (with ``data.factory`` for ``python``) and sized (``sized``)."""
    if d.name != "python" and d.factory is not None:
        raise ConfigError(f"data.factory is read by data.name=python only (data.name is {d.name}); remove it")
    factory = {"factory": d.factory} if d.name == "python" else {}
    splits = sized(load_dataset(d.name, root=d.root, download=d.download, **factory), d)
    if isinstance(splits, PythonSplits):
        _check_python_options(d)
    return splits


def _check_python_options(d: DataOptions) -> None:
    """Keys that a user's datasets leave to their own transforms: set to anything else than their
    defaults, they would be silently ignored, so they are refused."""
    refused = {"data.in_memory": (d.in_memory, "auto"), "data.eval_crop": (d.eval_crop, DEFAULT_EVAL_CROP),
               "data.crop_min_scale": (d.crop_min_scale, 0.08)}
    for key, (value, default) in refused.items():
        if value != default:
            raise ConfigError(f"{key}={value}: data.name=python streams the factory's datasets through their own "
                              "transforms; leave it unset")


def resolve_num_workers(num_workers: Optional[int]) -> int:
    """data.num_workers, or by default one decoding process per usable CPU up to 4: more workers
    than CPUs only compete with the training process for them."""
    return min(MAX_DEFAULT_WORKERS, usable_cpus()) if num_workers is None else num_workers


def sized(splits: DatasetSplits, d: DataOptions) -> DatasetSplits:
    """``splits`` at ``data.image_size``: image files are decoded at that side; a dataset of
    arrays has one size, so any other is an error rather than a setting silently ignored."""
    if not d.image_size:
        return splits
    if isinstance(splits, FolderSplits):
        return dataclasses.replace(splits, image_size=d.image_size)
    _check_fixed_size(d, splits.input_size)
    return splits


def _check_fixed_size(d: DataOptions, side: int) -> None:
    if d.image_size and d.image_size != side:
        raise ConfigError(f"data.image_size={d.image_size}: {d.name} holds {side}x{side} images, used at their "
                          f"own size; data.image_size resizes datasets of image files only (leave it unset)")


def split_dataset(splits: DatasetSplits, d: DataOptions) -> tuple[Split, Split, Split, Tensor]:
    """The run's train, validation and test sets, and the validation indices into ``splits.train``.

    The validation set is the dataset's own when it has one, else a seeded hold-out of
    ``data.val_size`` training images (``data.split_seed``). ``data.train_subset`` keeps the
    first N of the remaining training images, ``data.test_subset`` the first N test images.
    """
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
    val = own_val if own_val is not None else splits.train.subset(val_idx)
    return splits.train.subset(train_idx), val, test, val_idx


def dataset_info(d: DataOptions) -> DatasetInfo:
    """Classes and input shape of ``data.name`` at ``data.image_size``: from the registry when the
    dataset registered a fixed shape (no file is read), else from the dataset itself."""
    info = registered_info(d.name)
    if info is None:
        splits = load_configured(d)
        return DatasetInfo(splits.num_classes, splits.in_channels, splits.input_size,
                           isinstance(splits, FolderSplits))
    if info.image_files and d.image_size:
        return dataclasses.replace(info, input_size=d.image_size)
    _check_fixed_size(d, info.input_size)
    return info


def _in_memory(d: DataOptions, image_size: int, num_images: int) -> bool:
    if d.in_memory != "auto":
        return bool(d.in_memory)
    return image_size <= IN_MEMORY_MAX_SIDE and num_images * 3 * image_size**2 <= IN_MEMORY_MAX_BYTES


def _decode(files: ImageFiles, image_size: int, num_workers: int):
    return decode_to_memory(files, image_size, num_workers) if len(files) else files
