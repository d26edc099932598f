"""TinyImageNet (tiny-imagenet-200): 200 classes, 500 training and 50 validation 64x64 images each.

Layout: ``wnids.txt``, ``words.txt`` (optional, class names), ``train/<wnid>/images/*.JPEG`` and
``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (file, wnid, box, tab-separated).
The test images have no public labels, so, as in published results, the official validation
images are the test set here; checkpoint selection uses a hold-out of the training images.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import DataError
from .image_folder import FolderSplits, ImageFiles, dataset_root, read_rows, require
from .registry import DatasetInfo, register_dataset

# Per-channel statistics of the TinyImageNet training images, as commonly used.
MEAN, STD = (0.4802, 0.4481, 0.3975), (0.2302, 0.2265, 0.2262)
HINT = "Set data.root to the folder that holds 'tiny-imagenet-200' (unpacked tiny-imagenet-200.zip)."


@register_dataset("tiny_imagenet", DatasetInfo(num_classes=200, in_channels=3, input_size=64, image_files=True))
def tiny_imagenet(root: Optional[str] = None, download: bool = False) -> FolderSplits:
    base = dataset_root(root, "tiny_imagenet", "tiny-imagenet-200")
    require(base, "TinyImageNet", HINT)
    wnids = sorted(row[0] for row in read_rows(base / "wnids.txt", "TinyImageNet", HINT, 1))
    index = {w: i for i, w in enumerate(wnids)}
    paths, labels = [], []
    for wnid in wnids:
        folder = require(base / "train" / wnid / "images", "TinyImageNet", HINT)
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpeg", ".jpg", ".png"))
        paths += [str(p) for p in files]
        labels += [index[wnid]] * len(files)
    train = ImageFiles(paths, torch.tensor(labels))

    annotations = base / "val" / "val_annotations.txt"
    val_paths, val_labels = [], []
    for row in read_rows(annotations, "TinyImageNet", HINT, 2):
        if row[1] not in index:
            raise DataError(f"TinyImageNet: {annotations} labels {row[0]} with {row[1]}, which is not in wnids.txt")
        val_paths.append(str(require(base / "val" / "images" / row[0], "TinyImageNet", HINT)))
        val_labels.append(index[row[1]])
    test = ImageFiles(val_paths, torch.tensor(val_labels))

    names = wnids
    if (base / "words.txt").is_file():
        words = {row[0]: row[1].strip() for row in read_rows(base / "words.txt", "TinyImageNet", HINT, 2, maxsplit=1)}
        names = [words.get(w, w) for w in wnids]
    return FolderSplits("tiny_imagenet", train, test, len(wnids), MEAN, STD, names, str(base), image_size=64)
