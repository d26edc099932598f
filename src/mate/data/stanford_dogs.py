"""Stanford Dogs: 120 breeds, 12,000 training and 8,580 test images, in the published layout.

The dataset folder holds ``Images/<wnid>-<breed>/<file>.jpg`` (images.tar) and the split lists
``train_list.mat`` / ``test_list.mat`` (lists.tar): MATLAB files with ``file_list`` (paths
relative to ``Images/``) and ``labels`` (1..120). The lists exist only as .mat files, so they are
read with scipy, imported here alone (the ``datasets`` extra: ``pip install mate-distill[datasets]``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np
import torch

from ..errors import DataError
from .image_folder import IMAGENET_MEAN, IMAGENET_STD, FolderSplits, ImageFiles, dataset_root, require
from .registry import DatasetInfo, register_dataset

HINT = ("Set data.root to the folder that holds Images/ (from images.tar) and train_list.mat, test_list.mat "
        "(from lists.tar).")


def _read_list(path: Path) -> tuple[list[str], list[int]]:
    require(path, "Stanford Dogs", HINT)
    try:
        from scipy.io import loadmat
    except ImportError:
        raise DataError(f"Stanford Dogs: reading {path} (a MATLAB file) needs scipy: "
                        "pip install 'mate-distill[datasets]'") from None
    try:
        mat = loadmat(str(path))
        files = [str(np.ravel(item)[0]) for item in np.ravel(mat["file_list"])]
        labels = [int(v) for v in np.ravel(mat["labels"])]
    except Exception as exc:  # noqa: BLE001 - truncated file, wrong variables
        raise DataError(f"Stanford Dogs: {path} is not a readable split list with file_list and labels "
                        f"({type(exc).__name__}: {exc})") from None
    if len(files) != len(labels):
        raise DataError(f"Stanford Dogs: {path} lists {len(files)} files but {len(labels)} labels")
    return files, labels


@register_dataset("stanford_dogs", DatasetInfo(num_classes=120, in_channels=3, input_size=224, image_files=True))
def stanford_dogs(root: Optional[str] = None, download: bool = False) -> FolderSplits:
    base = dataset_root(root, "stanford_dogs", "StanfordDogs")
    images = require(base / "Images", "Stanford Dogs", HINT)
    splits, folder_of = {}, {}
    for split in ("train", "test"):
        files, labels = _read_list(base / f"{split}_list.mat")
        for f, y in zip(files, labels):
            folder = f.split("/", 1)[0]
            if folder_of.setdefault(y, folder) != folder:
                raise DataError(f"Stanford Dogs: label {y} names two breed folders, {folder_of[y]} and {folder}")
        splits[split] = ImageFiles([str(images / f) for f in files], torch.tensor(labels) - 1)
    num_classes = max(folder_of)
    if sorted(folder_of) != list(range(1, num_classes + 1)):
        raise DataError(f"Stanford Dogs: the split lists' labels must cover 1..{num_classes}")
    names = [folder_of[y].split("-", 1)[-1] for y in range(1, num_classes + 1)]
    return FolderSplits("stanford_dogs", splits["train"], splits["test"], num_classes, IMAGENET_MEAN, IMAGENET_STD,
                        names, str(base))
