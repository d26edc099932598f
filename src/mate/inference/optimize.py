"""A trained multi-exit network made ready for inference.

``prepare_for_inference(model)`` returns a copy that

- is in eval mode with gradients off;
- has every BatchNorm that directly follows a convolution folded into that convolution's
  weights and bias (``torch.fx.experimental.optimization.fuse``, run on the stem, each stage
  and each exit separately, so the stage-by-stage structure the early-exit predictor walks is
  kept). Pre-activation BatchNorms (BN -> ReLU -> conv, as in Wide ResNets) cannot be folded
  and stay;
- on CPU, keeps its weights in channels-last (NHWC) layout, which oneDNN's convolutions run
  faster (docs/benchmarks.md). Inputs may stay NCHW: the first convolution switches them.

Folding changes the logits by float rounding only (about 1e-6 relative). For exact early-exit
results, calibrate thresholds and run the offline simulation on the prepared model, which is
what ``mate predict`` and ``benchmarks/early_exit.py`` do.
"""
from __future__ import annotations

import copy
import warnings
from typing import Optional

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse

from ..models import MultiExitNetwork


def fold_batchnorm(module: nn.Module) -> nn.Module:
    """``module`` traced with torch.fx and every conv -> BatchNorm pair folded (eval mode).

    A module torch.fx cannot trace (data-dependent control flow in a custom block) is returned
    unfolded, with a warning: it still runs, only without the folding.
    """
    module = module.eval()
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return module
    try:
        return fuse(module, inplace=True)
    except Exception as exc:  # torch.fx raises several types for untraceable code
        warnings.warn(f"BatchNorm left unfolded in {type(module).__name__}: torch.fx cannot trace it "
                      f"({type(exc).__name__}: {exc})", stacklevel=2)
        return module


@torch.no_grad()
def prepare_for_inference(model: MultiExitNetwork, fold: bool = True,
                          channels_last: Optional[bool] = None) -> MultiExitNetwork:
    """A folded, NHWC (on CPU), eval-mode copy of ``model``; ``model`` itself is not changed.

    channels_last: None means NHWC on CPU and unchanged elsewhere.
    """
    prepared = copy.deepcopy(model).eval()
    if fold:
        prepared.stem = fold_batchnorm(prepared.stem)
        prepared.stages = nn.ModuleList(fold_batchnorm(block) for block in prepared.stages)
        prepared.exits = nn.ModuleList(fold_batchnorm(exit_) for exit_ in prepared.exits)
    if channels_last is None:
        channels_last = next(prepared.parameters()).device.type == "cpu"
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    prepared.requires_grad_(False)
    return prepared
