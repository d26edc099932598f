"""Datasets of image files: lists of paths and labels, decoded only when a loader reads them.

``ImageFiles`` plays the part ``ArrayDataset`` plays for in-memory sets (``len``, ``labels``,
``subset``), and ``FolderSplits`` the part of ``DatasetSplits``: its ``input_size`` is the side
the images are cropped to, and ``val`` holds a dataset's own validation split where it has one.
The generic ``image_folder`` dataset reads ``train/``, ``val/`` and optionally ``test/``, each with
one sub-folder per class. The published layouts (TinyImageNet, CUB-200-2011, Stanford Dogs,
FGVC-Aircraft) have their own modules built on the helpers here.

``open_image`` is the one place an image file is opened, for training and for ``mate predict``
alike: unreadable files, decompression bombs and 16-bit images are handled there once.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import DataError
from .base import DatasetSplits
from .registry import register_dataset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# image_folder without data.image_size: the images' own size when they all share one no larger
# than this (upsampling adds no information), else this side, the usual ImageNet crop.
DEFAULT_IMAGE_SIZE = 224
SIZE_CHECK_LIMIT = 1000  # training images whose size is read (evenly spread) to pick the default


def open_image(path: str | Path, mode: str):
    """The image file ``path`` decoded and converted to ``mode`` ("L" or "RGB"), as a PIL image.

    16-bit images (PIL modes I;16* and I) are scaled by their bit depth, 65535 -> 255: PIL's own
    conversion clips them, which turns almost every pixel white. A file that cannot be read,
    including one over PIL's decompression-bomb limit, is a DataError naming it.
    """
    from PIL import Image

    try:
        with Image.open(path) as img:
            if img.mode.startswith("I;16") or img.mode == "I":
                import numpy as np

                wide = np.asarray(img, dtype=np.float64)
                img = Image.fromarray(np.clip(np.rint(wide / 257.0), 0, 255).astype(np.uint8), mode="L")
            return img.convert(mode)
    except Image.DecompressionBombError as exc:
        raise DataError(f"cannot read image {path}: {_bomb_reason(exc)}") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot read image {path}: the file is missing, truncated or not an image ({exc})") from None


def _bomb_reason(exc: Exception) -> str:
    from PIL import Image

    pixels = re.findall(r"\d+", str(exc))  # PIL: "Image size (N pixels) exceeds limit of M pixels, ..."
    count = f"{pixels[0]} pixels" if pixels else "too many pixels"
    return (f"{count}, more than PIL's decompression-bomb limit ({2 * Image.MAX_IMAGE_PIXELS}); raise "
            "PIL.Image.MAX_IMAGE_PIXELS if the file is trusted")


def default_image_size(files: "ImageFiles") -> tuple[int, str]:
    """The side image_folder trains at when data.image_size is unset, and a note that says why."""
    from PIL import Image

    step = max(1, len(files) // SIZE_CHECK_LIMIT)
    checked = files.paths[::step][:SIZE_CHECK_LIMIT]
    sizes: dict[tuple[int, int], str] = {}
    for path in checked:
        try:
            with Image.open(path) as img:
                sizes.setdefault(img.size, path)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            open_image(path, "RGB")  # the same clear error training would give
    how_many = (f"all {len(checked)} training images" if len(checked) == len(files)
                else f"all {len(checked)} training images checked (of {len(files)})")
    choose = "set data.image_size=N to train at N x N"
    if len(sizes) > 1:
        a, b = (f"{w}x{h}" for w, h in list(sizes)[:2])
        return DEFAULT_IMAGE_SIZE, (f"data.image_size unset: {DEFAULT_IMAGE_SIZE} px, because the training images "
                                    f"have several sizes (e.g. {a} and {b}); {choose}")
    (w, h), = sizes
    if min(w, h) > DEFAULT_IMAGE_SIZE:
        return DEFAULT_IMAGE_SIZE, (f"data.image_size unset: {DEFAULT_IMAGE_SIZE} px, because the training images "
                                    f"({w}x{h}) are larger; {choose}")
    side = min(w, h)
    shape = "size" if w == h else f"shorter side of the {w}x{h} size"
    return side, (f"data.image_size unset: {side} px, the {shape} {how_many} share (set data.image_size to choose "
                  "another)")


@dataclass
class ImageFiles:
    paths: list[str]
    labels: Tensor  # int64, one per path

    def __post_init__(self):
        self.labels = torch.as_tensor(self.labels, dtype=torch.long)
        if self.labels.shape != (len(self.paths),):
            raise ValueError("labels must have one entry per image path")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: Tensor) -> "ImageFiles":
        indices = torch.as_tensor(indices, dtype=torch.long)
        return ImageFiles([self.paths[i] for i in indices.tolist()], self.labels[indices])


@dataclass
class FolderSplits(DatasetSplits):
    """Splits of a dataset of image files. Images are decoded as RGB at ``image_size`` pixels."""

    image_size: int = 224
    val: Optional[ImageFiles] = None  # the dataset's own validation split (replaces the hold-out)

    @property
    def in_channels(self) -> int:
        return 3

    @property
    def input_size(self) -> int:
        return self.image_size


def dataset_root(root: Optional[str], name: str, folder_name: str) -> Path:
    """``root/folder_name`` when it exists, else ``root`` itself (default root: $MATE_DATA/name)."""
    default = Path(os.environ.get("MATE_DATA", Path.home() / ".cache" / "mate")) / name
    base = Path(root).expanduser() if root else default
    return base / folder_name if (base / folder_name).is_dir() else base


def require(path: Path, dataset: str, hint: str) -> Path:
    """``path`` if it exists; otherwise a DataError that names it."""
    if not path.exists():
        kind = "folder" if not path.suffix else "file"
        raise DataError(f"{dataset}: missing {kind} {path}. {hint}")
    return path


def read_rows(path: Path, dataset: str, hint: str, columns: int, maxsplit: int = -1) -> list[list[str]]:
    """Whitespace-separated rows of a list file; every row must have at least ``columns`` fields."""
    rows = []
    with open(require(path, dataset, hint), encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            row = line.split(None, maxsplit) if maxsplit >= 0 else line.split()
            if len(row) < columns:
                raise DataError(f"{dataset}: line {number} of {path} has {len(row)} fields, expected {columns}")
            rows.append(row)
    return rows


def scan_class_folders(folder: Path, dataset: str, hint: str,
                       class_names: Optional[Sequence[str]] = None) -> tuple[ImageFiles, list[str]]:
    """Image files of ``folder/<class>/...``; classes are the sorted sub-folders unless given."""
    require(folder, dataset, hint)
    found = sorted(p.name for p in folder.iterdir() if p.is_dir())
    training = class_names is None  # the split that defines the classes
    if training:
        class_names = found
        if not class_names:
            raise DataError(f"{dataset}: {folder} has no class sub-folders. {hint}")
        if len(class_names) == 1:
            # every label would be 0, and every accuracy 100 %
            raise DataError(f"{dataset}: {folder} has one class folder ({class_names[0]}); a classifier needs at "
                            "least two")
    index = {name: i for i, name in enumerate(class_names)}
    paths, labels = [], []
    for name in found:
        if name not in index:
            raise DataError(f"{dataset}: class folder {folder / name} is not one of the training classes")
        files = sorted(p for p in (folder / name).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        if training and not files:
            # a class without a training image is never predicted and would only look learnt
            raise DataError(f"{dataset}: the class folder {folder / name} holds no image files "
                            f"({', '.join(IMAGE_EXTENSIONS)}); add images or remove the folder")
        paths += [str(p) for p in files]
        labels += [index[name]] * len(files)
    if not paths:
        raise DataError(f"{dataset}: no image files under {folder}. {hint}")
    return ImageFiles(paths, torch.tensor(labels)), list(class_names)


@register_dataset("image_folder")
def image_folder(root: Optional[str] = None, download: bool = False) -> FolderSplits:
    """``root/train``, ``root/val`` and optionally ``root/test``, one sub-folder per class.

    With a ``test/`` folder, ``val/`` is the validation split used for checkpoint selection.
    Without one, ``val/`` is the test set (as published ImageNet-style results use it) and the
    validation split is held out of ``train/`` (``data.val_size``).

    The default input side (without ``data.image_size``) is the training images' own size when
    they all share one of at most 224 pixels, else 224; ``extra["image_size_note"]`` says which.
    """
    hint = "data.root must be a folder with train/<class>/*.jpg and val/<class>/*.jpg (test/ optional)."
    if not root:
        raise DataError(f"image_folder needs data.root. {hint}")
    base = Path(root).expanduser()
    require(base, "image_folder", hint)
    train, classes = scan_class_folders(base / "train", "image_folder", hint)
    val, _ = scan_class_folders(base / "val", "image_folder", hint, classes)
    if (base / "test").is_dir():
        test, _ = scan_class_folders(base / "test", "image_folder", hint, classes)
        official_val: Optional[ImageFiles] = val
    else:
        test, official_val = val, None
    side, note = default_image_size(train)
    return FolderSplits("image_folder", train, test, len(classes), IMAGENET_MEAN, IMAGENET_STD, classes,
                        str(base), extra={"image_size_note": note}, image_size=side, val=official_val)
