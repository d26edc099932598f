"""CIFAR-10 and CIFAR-100 in their official python format (the layout torchvision uses).

The batches are pickles. They are read with an unpickler that only admits the few numpy
constructors the official files use, so a crafted file cannot run code. torchvision is used only
to download the archive where the network allows it.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetSplits
from .registry import DatasetInfo, register_dataset

STATS = {
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}
LAYOUT = {
    "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"],
                "batches.meta", b"labels", b"label_names"),
    "cifar100": ("cifar-100-python", ["train"], ["test"], "meta", b"fine_labels", b"fine_label_names"),
}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"forbidden object {module}.{name} in a CIFAR file")


def _read_batch(path: Path) -> dict:
    if not path.is_file():
        raise DataError(f"missing CIFAR file {path}")
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, encoding="bytes").load()
    except Exception as exc:  # noqa: BLE001 - truncation, bad pickle, forbidden object
        raise DataError(f"CIFAR file {path} is corrupt or truncated ({type(exc).__name__}: {exc})") from None


def _to_dataset(path_batches: list[Path], label_key: bytes) -> ArrayDataset:
    images, labels = [], []
    for path in path_batches:
        batch = _read_batch(path)
        try:
            data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
            lab = np.asarray(batch[label_key], dtype=np.int64)
        except (KeyError, ValueError) as exc:
            raise DataError(f"CIFAR file {path} does not hold 3x32x32 images and labels: {exc}") from None
        if len(data) != len(lab):
            raise DataError(f"CIFAR file {path}: {len(data)} images but {len(lab)} labels")
        images.append(data)
        labels.append(lab)
    return ArrayDataset(torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels)))


def _load(name: str, root: Optional[str], download: bool) -> DatasetSplits:
    folder_name, train_files, test_files, meta_file, label_key, names_key = LAYOUT[name]
    base = Path(root) if root else Path(os.environ.get("MATE_DATA", Path.home() / ".cache" / "mate")) / name
    folder = base / folder_name
    if not folder.is_dir() and download:
        try:
            from torchvision.datasets import CIFAR10, CIFAR100

            (CIFAR10 if name == "cifar10" else CIFAR100)(str(base), train=True, download=True)
        except Exception:  # noqa: BLE001 - no network: fall through to the clear error below
            pass
    if not folder.is_dir():
        raise DataError(
            f"{name} was not found: no folder {folder}. Set data.root to the folder that holds "
            f"'{folder_name}' (the official python version), or allow network access and set "
            "data.download=true."
        )
    train = _to_dataset([folder / f for f in train_files], label_key)
    test = _to_dataset([folder / f for f in test_files], label_key)
    num_classes = 10 if name == "cifar10" else 100
    class_names = None
    if (folder / meta_file).is_file():
        meta = _read_batch(folder / meta_file)
        class_names = [n.decode() if isinstance(n, bytes) else str(n) for n in meta.get(names_key, [])] or None
    mean, std = STATS[name]
    return DatasetSplits(name, train, test, num_classes, mean, std, class_names, str(folder))


@register_dataset("cifar10", DatasetInfo(num_classes=10, in_channels=3, input_size=32))
def cifar10(root: Optional[str] = None, download: bool = False) -> DatasetSplits:
    return _load("cifar10", root, download)


@register_dataset("cifar100", DatasetInfo(num_classes=100, in_channels=3, input_size=32))
def cifar100(root: Optional[str] = None, download: bool = False) -> DatasetSplits:
    return _load("cifar100", root, download)
