"""MobileNetV2 (Sandler et al., 2018) as a multi-exit network, one exit per resolution.

The inverted-residual blocks are torchvision's. ``width`` is the stem's channel count (32 in
MobileNetV2); every layer, the final 1x1 conv included, scales with width / 32, rounded to a
multiple of 8. With ``small_input`` (the default, the usual CIFAR adaptation) the stem and the
second group keep stride 1, so 32x32 input gives stage maps of 32, 16, 8 and 4 pixels; set it to
false for 224-pixel input (the original strides, maps of 56, 28, 14 and 7).

The seven bottleneck groups are grouped into four stages by resolution: groups 1-2 (24 ch),
group 3 (32 ch), groups 4-5 (64, 96 ch), groups 6-7 and the final 1x1 conv (1280 ch). Every exit
resizes to the last stage's 1280 channels, so on this network the exits cost more, relative to
the backbone, than on the ResNets.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from ..options import PositiveInt
from .base import MultiExitNetwork
from .registry import register_model

# (expansion t, channels c, blocks n, stride s) of the seven groups, as in the paper.
GROUPS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
STAGE_GROUPS = ((0, 1), (2,), (3, 4), (5, 6))
LAST_CHANNELS = 1280


def _round8(channels: float) -> int:
    """Round to a multiple of 8 without going more than 10% below (MobileNet's rule)."""
    rounded = max(8, int(channels + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * channels else rounded


def _conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU6(inplace=True))


@register_model("mobilenetv2")
def mobilenetv2(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 32, input_size: int = 32,
                exit_stages: Optional[Sequence[int]] = None, small_input: bool = True) -> MultiExitNetwork:
    """MobileNetV2.

    Args:
        width: channels of the stem (32 in MobileNetV2); every layer scales with width / 32,
            rounded to a multiple of 8.
        small_input: stride 1 in the stem and the second group, for 32-pixel input (CIFAR); false
            keeps the original strides, for 224-pixel input.
    """
    from torchvision.models.mobilenetv2 import InvertedResidual  # here, not at import: importing mate stays quick

    scale = width / 32
    cin = _round8(width)
    stem = _conv_bn_relu6(in_channels, cin, 3, 1 if small_input else 2)
    groups = []
    for g, (t, c, n, s) in enumerate(GROUPS):
        if small_input and g == 1:
            s = 1
        cout = _round8(c * scale)
        blocks = []
        for j in range(n):
            blocks.append(InvertedResidual(cin, cout, s if j == 0 else 1, t))
            cin = cout
        groups.append(blocks)
    stages = [nn.Sequential(*[b for g in ids for b in groups[g]]) for ids in STAGE_GROUPS]
    stages[-1].append(_conv_bn_relu6(cin, _round8(LAST_CHANNELS * scale), 1, 1))
    net = MultiExitNetwork(stem, stages, num_classes, in_channels, input_size, exit_stages)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
    return net
