"""FGVC-Aircraft (2013b): 100 aircraft variants, in the published layout.

``fgvc-aircraft-2013b/data/`` holds ``images/<id>.jpg``, ``variants.txt`` (one name a line, the
class order) and ``images_variant_{train,val,test}.txt`` (id, variant name). As in published
results, the model trains on train + val (6,667 images) and is tested on test (3,333); checkpoint
selection uses a hold-out of the training images.
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import DataError
from .image_folder import IMAGENET_MEAN, IMAGENET_STD, FolderSplits, ImageFiles, dataset_root, read_rows, require
from .registry import DatasetInfo, register_dataset

HINT = "Set data.root to the folder that holds 'fgvc-aircraft-2013b' (unpacked fgvc-aircraft-2013b.tar.gz)."


def _split(data, names: dict[str, int], split: str) -> tuple[list[str], list[int]]:
    path = data / f"images_variant_{split}.txt"
    paths, labels = [], []
    for image_id, variant in read_rows(path, "FGVC-Aircraft", HINT, 2, maxsplit=1):
        variant = variant.strip()
        if variant not in names:
            raise DataError(f"FGVC-Aircraft: {path} names variant '{variant}', which is not in variants.txt")
        paths.append(str(data / "images" / f"{image_id}.jpg"))
        labels.append(names[variant])
    return paths, labels


@register_dataset("fgvc_aircraft", DatasetInfo(num_classes=100, in_channels=3, input_size=224, image_files=True))
def fgvc_aircraft(root: Optional[str] = None, download: bool = False) -> FolderSplits:
    base = dataset_root(root, "fgvc_aircraft", "fgvc-aircraft-2013b")
    data = require(base / "data", "FGVC-Aircraft", HINT)
    require(data / "images", "FGVC-Aircraft", HINT)
    with open(require(data / "variants.txt", "FGVC-Aircraft", HINT), encoding="utf-8") as f:
        variants = [line.strip() for line in f if line.strip()]
    index = {v: i for i, v in enumerate(variants)}
    train_paths, train_labels = _split(data, index, "train")
    val_paths, val_labels = _split(data, index, "val")
    test_paths, test_labels = _split(data, index, "test")
    train = ImageFiles(train_paths + val_paths, torch.tensor(train_labels + val_labels))
    test = ImageFiles(test_paths, torch.tensor(test_labels))
    return FolderSplits("fgvc_aircraft", train, test, len(variants), IMAGENET_MEAN, IMAGENET_STD, variants, str(base))
