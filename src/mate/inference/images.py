"""Image files -> a normalised batch in the model's input format."""
from __future__ import annotations

from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor

from ..data.image_folder import IMAGE_EXTENSIONS
from ..data.normalize import normalize_images
from ..errors import DataError


def list_images(folder: str | Path) -> List[Path]:
    """The image files of ``folder`` (the suffixes training reads), sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"image folder {folder} does not exist")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    return files


def load_images(paths: Sequence[Path], in_channels: int, size: int, mean: Sequence[float],
                std: Sequence[float]) -> Tensor:
    """N x C x size x size float batch: grey or RGB as the model expects, resized (bilinear),
    scaled to [0, 1] and normalised with the training set's statistics (as the data loader does)."""
    from PIL import Image

    mode = "L" if in_channels == 1 else "RGB"
    arrays = []
    for path in paths:
        try:
            with Image.open(path) as img:
                img = img.convert(mode)
                if img.size != (size, size):
                    img = img.resize((size, size), Image.BILINEAR)
                arrays.append(np.asarray(img, dtype=np.uint8).reshape(size, size, in_channels))
        except OSError as exc:
            raise DataError(f"cannot read image {path}: {exc}") from None
    images = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return normalize_images(images, mean, std).contiguous()
