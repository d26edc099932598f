"""CUB-200-2011: 200 bird species, 5,994 training and 5,794 test images, in the published layout.

``CUB_200_2011/`` holds ``images/``, ``images.txt`` (id, relative path), ``train_test_split.txt``
(id, 1 = train), ``image_class_labels.txt`` (id, class id from 1) and ``classes.txt`` (class id,
name).
"""
from __future__ import annotations

from typing import Optional

import torch

from ..errors import DataError
from .image_folder import IMAGENET_MEAN, IMAGENET_STD, FolderSplits, ImageFiles, dataset_root, read_rows, require
from .registry import DatasetInfo, register_dataset

HINT = "Set data.root to the folder that holds 'CUB_200_2011' (unpacked CUB_200_2011.tgz)."


@register_dataset("cub200", DatasetInfo(num_classes=200, in_channels=3, input_size=224, image_files=True))
def cub200(root: Optional[str] = None, download: bool = False) -> FolderSplits:
    base = dataset_root(root, "cub200", "CUB_200_2011")
    require(base, "CUB-200-2011", HINT)
    images_dir = require(base / "images", "CUB-200-2011", HINT)
    paths = {row[0]: row[1].strip() for row in read_rows(base / "images.txt", "CUB-200-2011", HINT, 2, maxsplit=1)}
    is_train = {row[0]: row[1] == "1" for row in read_rows(base / "train_test_split.txt", "CUB-200-2011", HINT, 2)}
    class_of = {row[0]: int(row[1]) for row in read_rows(base / "image_class_labels.txt", "CUB-200-2011", HINT, 2)}
    classes = sorted((int(row[0]), row[1].strip())
                     for row in read_rows(base / "classes.txt", "CUB-200-2011", HINT, 2, maxsplit=1))
    names = [name for _, name in classes]
    if [cid for cid, _ in classes] != list(range(1, len(classes) + 1)):
        raise DataError(f"CUB-200-2011: {base / 'classes.txt'} must number the classes 1..N")
    splits: dict[bool, tuple[list, list]] = {True: ([], []), False: ([], [])}
    for image_id, rel in paths.items():
        if image_id not in is_train or image_id not in class_of:
            missing = "train_test_split.txt" if image_id not in is_train else "image_class_labels.txt"
            raise DataError(f"CUB-200-2011: image {image_id} of images.txt is missing from {base / missing}")
        if not 1 <= class_of[image_id] <= len(names):
            raise DataError(f"CUB-200-2011: image {image_id} has class {class_of[image_id]}, not in classes.txt")
        split = splits[is_train[image_id]]
        split[0].append(str(images_dir / rel))
        split[1].append(class_of[image_id] - 1)
    train, test = (ImageFiles(p, torch.tensor(y)) for p, y in (splits[True], splits[False]))
    return FolderSplits("cub200", train, test, len(names), IMAGENET_MEAN, IMAGENET_STD, names, str(base))
