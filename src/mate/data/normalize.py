"""The network's input from image pixels: one normalisation for training, ``mate predict`` and the
ONNX Runtime predictor.

Images hold values in [0, 255] (uint8 as decoded, or float); each channel c becomes
(x - 255 mean_c) / (255 std_c) in float32, with the training set's statistics in [0, 1] units.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from torch import Tensor


def normalize_images(images: Tensor | np.ndarray, mean: Sequence[float] | Tensor,
                     std: Sequence[float] | Tensor) -> Any:
    """N x C x H x W images in [0, 255] -> float32 network input, of the images' kind: a torch
    tensor (on the images' device; ``mean``/``std`` may already be tensors there) or a NumPy array."""
    if isinstance(images, Tensor):
        x = images.float()
        m = torch.as_tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
        s = torch.as_tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    else:
        x = np.asarray(images, dtype=np.float32)
        m = np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
        s = np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return (x - m * 255.0) / (s * 255.0)
