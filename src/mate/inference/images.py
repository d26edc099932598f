"""Image files -> a normalised batch in the model's input format, and the labels their class
folders give them."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.image_folder import IMAGE_EXTENSIONS, open_image
from ..data.normalize import normalize_images
from ..errors import DataError


def list_images(folder: str | Path) -> List[Path]:
    """The image files under ``folder`` (the suffixes training reads), sub-folders included, sorted by path."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder} or its sub-folders")
    return files


def class_folder_labels(folder: str | Path, paths: Sequence[Path], class_names: Sequence[str]) -> Optional[List[int]]:
    """The class index of every image when ``folder`` is laid out as training reads a split (each
    image under a sub-folder named after one of the model's classes); None otherwise."""
    index = {name: i for i, name in enumerate(class_names)}
    labels = []
    for path in paths:
        parts = Path(path).relative_to(folder).parts
        if len(parts) < 2 or parts[0] not in index:
            return None
        labels.append(index[parts[0]])
    return labels


def load_images(paths: Sequence[Path], in_channels: int, size: int, mean: Sequence[float],
                std: Sequence[float]) -> Tensor:
    """N x C x size x size float batch: grey or RGB as the model expects, resized (bilinear),
    scaled to [0, 1] and normalised with the statistics the model was trained with (as the data
    loader does). Files are opened as training opens them (``open_image``)."""
    from PIL import Image

    mode = "L" if in_channels == 1 else "RGB"
    arrays = []
    for path in paths:
        img = open_image(path, mode)
        if img.size != (size, size):
            img = img.resize((size, size), Image.BILINEAR)
        arrays.append(np.asarray(img, dtype=np.uint8).reshape(size, size, in_channels))
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return normalize_images(images, mean, std).contiguous()
