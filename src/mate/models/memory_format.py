"""Channels-last (NHWC) weights for training, except where PyTorch's CPU kernel is unsafe.

PyTorch 2.14.1's channels-last CPU backward of a 1x1 convolution with stride 2 (or more)
corrupts the heap (glibc "double free or corruption", or a segfault) when the convolution has 2
to 15 input channels and reads maps of 48 pixels or more: a width-8 ResNet-18's stage-2 shortcut
(8 -> 16 channels) on 48- or 64-pixel images, at any batch size. The weight gradient alone
triggers it; the forward pass, larger kernels, stride 1, one input channel and 16 or more input
channels were clean in a probe over channels, kernel, stride, side, batch and threads (each case
in its own process, under glibc's heap checker: scripts/probe_channels_last.py, docs/reliability.md).

``to_channels_last`` converts a model as ``model.to(memory_format=torch.channels_last)`` does and,
on the CPU, keeps each such convolution in NCHW: its weight keeps NCHW strides and its input is
made contiguous by a forward pre-hook, so PyTorch runs its NCHW kernel there and NHWC elsewhere.
The fallback changes that convolution's float rounding only; a network without such a
convolution (every Fashion-MNIST and CIFAR configuration: 28- and 32-pixel maps) is converted
exactly as before.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

UNSAFE_IN_CHANNELS = range(2, 16)  # 2..15 input channels
SAFE_MAX_SIDE = 32  # crashes began at 48 pixels (none at 33-44); the margin covers the untested 45-47


def channels_last_unsafe(conv: nn.Module, side: int) -> bool:
    """Whether the channels-last CPU backward of ``conv`` on ``side``-pixel maps hits the crash."""
    return (isinstance(conv, nn.Conv2d) and tuple(conv.kernel_size) == (1, 1) and max(conv.stride) > 1
            and conv.in_channels in UNSAFE_IN_CHANNELS and side > SAFE_MAX_SIDE)


def _contiguous_input(module: nn.Module, args: Sequence[Tensor]) -> tuple:
    return (args[0].contiguous(), *args[1:])


@torch.no_grad()
def _conv_input_sides(model: nn.Module) -> dict[str, int]:
    """The larger side of every Conv2d's input map, from one forward pass of a zero image."""
    sides: dict[str, int] = {}

    def record(name: str):
        def hook(module: nn.Module, args: Sequence[Tensor]) -> None:  # None: the input is left as it is
            sides.setdefault(name, max(args[0].shape[-2:]))
        return hook

    hooks = [m.register_forward_pre_hook(record(name)) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    was_training = model.training
    p = next(model.parameters())
    try:
        model.eval()
        model(torch.zeros(1, model.in_channels, model.input_size, model.input_size, device=p.device, dtype=p.dtype))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return sides


def to_channels_last(model: nn.Module, device: torch.device) -> list[str]:
    """Convert ``model`` (in place) to channels-last weights, keeping the convolutions that would
    crash on the CPU in NCHW; returns their names (empty where nothing is unsafe)."""
    model.to(memory_format=torch.channels_last)
    if device.type != "cpu":  # the faulty kernel is oneDNN's, on the CPU
        return []
    sides = _conv_input_sides(model)
    kept = []
    for name, module in model.named_modules():
        if name in sides and channels_last_unsafe(module, sides[name]):
            # clone, not .contiguous(): a 1x1 weight in NHWC strides counts as contiguous too, and
            # .contiguous() would keep the strides that make PyTorch pick the channels-last kernel
            module.weight.data = module.weight.data.clone(memory_format=torch.contiguous_format)
            module.register_forward_pre_hook(_contiguous_input)
            kept.append(name)
    return kept
