"""Fashion-MNIST from IDX files: a user's folder, Debian's ``dataset-fashion-mnist``, or torchvision.

An explicit ``data.root`` is the only place looked at (and downloaded into, with data.download):
a root that is missing or incomplete is an error naming what is missing, never a silent switch
to another copy. Without it, Debian's copy, then the download cache, then a download.

IDX is parsed here (a 4-byte magic, big-endian dimensions, raw uint8) so every truncated or
corrupt file is named in the error rather than failing somewhere deep inside.
"""
from __future__ import annotations

import gzip
import os
import struct
import zlib
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .base import ArrayDataset, DatasetSplits
from .registry import DatasetInfo, register_dataset

DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
           "Bag", "Ankle boot"]
# Training-set statistics of Fashion-MNIST pixels scaled to [0, 1].
MEAN, STD = (0.2860,), (0.3530,)


def read_idx(path: Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) of unsigned bytes."""
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as exc:  # zlib.error: a corrupt .gz
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"IDX file {path} is truncated (only {len(raw)} bytes)")
    zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or dtype_code != 0x08 or ndim < 1:
        raise DataError(f"{path} is not an IDX file of unsigned bytes (bad magic number)")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file {path} is truncated inside its header")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = int(np.prod(shape))
    if len(raw) - header != expected:
        raise DataError(
            f"IDX file {path} is truncated or corrupt: its header announces {expected} bytes of "
            f"data for shape {shape}, the file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def _find(folder: Path, stem: str) -> Optional[Path]:
    for name in (stem, stem + ".gz"):
        if (folder / name).is_file():
            return folder / name
    return None


def _load_folder(folder: Path) -> Optional[dict]:
    found = {k: _find(folder, v) for k, v in FILES.items()}
    if all(found.values()):
        return {k: read_idx(p) for k, p in found.items()}
    return None


def _torchvision_download(folder: Path) -> Optional[Path]:
    try:
        from torchvision.datasets import FashionMNIST

        FashionMNIST(str(folder), train=True, download=True)
        FashionMNIST(str(folder), train=False, download=True)
    except Exception:  # noqa: BLE001 - any network or mirror failure means "not available"
        return None
    return folder / "FashionMNIST" / "raw"


def _default_cache() -> Path:
    return Path(os.environ.get("MATE_DATA", Path.home() / ".cache" / "mate")) / "fashion_mnist"


def _from_root(root: Path, download: bool) -> tuple[dict, str]:
    """The arrays in ``root`` (or its torchvision layout FashionMNIST/raw), downloaded there when allowed."""
    folders = [root, root / "FashionMNIST" / "raw"]
    for folder in folders:
        arrays = _load_folder(folder)
        if arrays is not None:
            return arrays, str(folder)
    if root.is_dir():
        # what the folder closest to complete lacks (the root itself on a tie)
        lacking = [[f"{stem}[.gz]" for stem in FILES.values() if _find(folder, stem) is None] for folder in folders]
        missing = min(lacking, key=len)
        problem = ", ".join(missing) + (" is missing" if len(missing) == 1 else " are missing")
    else:
        problem = "the folder does not exist"
    if download:
        folder = _torchvision_download(root)
        arrays = _load_folder(folder) if folder is not None else None
        if arrays is not None:
            return arrays, str(folder)
        problem += ", and the download into it failed"
    files = ", ".join(f"{stem}[.gz]" for stem in FILES.values())
    raise DataError(f"Fashion-MNIST is not in data.root={root}: {problem}. Put the four IDX files ({files}) there, "
                    "allow a download into it with data.download=true, or leave data.root unset to use the system "
                    "copy (sudo apt-get install dataset-fashion-mnist)")


@register_dataset("fashion_mnist", DatasetInfo(num_classes=10, in_channels=1, input_size=28))
def fashion_mnist(root: Optional[str] = None, download: bool = True) -> DatasetSplits:
    if root:
        arrays, source = _from_root(Path(root).expanduser(), download)
        return _splits(arrays, source)
    tried = []
    candidates = [DEBIAN_DIR, _default_cache() / "FashionMNIST" / "raw"]
    arrays, source = None, ""
    for folder in candidates:
        tried.append(str(folder))
        arrays = _load_folder(folder)
        if arrays is not None:
            source = str(folder)
            break
    if arrays is None and download:
        folder = _torchvision_download(_default_cache())
        if folder is not None:
            arrays, source = _load_folder(folder), str(folder)
    if arrays is None:
        raise DataError(
            "Fashion-MNIST was not found (looked in: " + ", ".join(tried) + "). Get it one of three ways:\n"
            "  1. put the four IDX files (train-images-idx3-ubyte[.gz], ...) in a folder and set data.root=FOLDER;\n"
            "  2. on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist;\n"
            "  3. allow network access and keep data.download=true (torchvision downloads it)."
        )
    return _splits(arrays, source)


def _splits(arrays: dict, source: str) -> DatasetSplits:
    for split in ("train", "test"):
        n_img, n_lab = len(arrays[f"{split}_images"]), len(arrays[f"{split}_labels"])
        if n_img != n_lab:
            raise DataError(f"Fashion-MNIST {split} set in {source}: {n_img} images but {n_lab} labels")

    def to_dataset(split: str) -> ArrayDataset:
        images = torch.from_numpy(arrays[f"{split}_images"].copy()).unsqueeze(1)
        return ArrayDataset(images, torch.from_numpy(arrays[f"{split}_labels"].astype(np.int64)))

    return DatasetSplits("fashion_mnist", to_dataset("train"), to_dataset("test"), 10, MEAN, STD,
                         CLASSES, source)
