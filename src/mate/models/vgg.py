"""VGG-16 with batch norm as a multi-exit network (CIFAR practice: one Linear head, no 4096-unit FCs).

VGG-16's thirteen 3x3 convs form five blocks of 2, 2, 3, 3, 3 convs with ``width``, 2w, 4w, 8w
and 8w channels (w = 64 in VGG-16). Block 1 is the stem; each later block is a stage that starts
with the 2x2 max-pool, so exits sit after blocks 2, 3, 4 and 5 (four exits, the last being the
backbone's head). Stage maps on 32x32 input: 2w x 16, 4w x 8, 8w x 4, 8w x 2, hence the exits'
resize strides 8, 4, 2 as on the ResNets. The pool after block 5 is replaced by the head's global
average pool.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from ..options import PositiveInt
from .base import MultiExitNetwork, conv_bn_relu
from .registry import register_model

BLOCKS = ((1, 2), (2, 2), (4, 3), (8, 3), (8, 3))  # (channel multiple of width, convs)


def _block(cin: int, cout: int, convs: int, pool: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.MaxPool2d(2)] if pool else []
    for i in range(convs):
        layers.append(conv_bn_relu(cin if i == 0 else cout, cout, 3, padding=1))
    return nn.Sequential(*layers)


@register_model("vgg16")
def vgg16(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 32,
          exit_stages: Optional[Sequence[int]] = None) -> MultiExitNetwork:
    """VGG-16 with batch norm.

    Args:
        width: channels of the first block (64 in VGG-16); the blocks have 1, 2, 4, 8 and 8 times as many.
    """
    blocks, cin = [], in_channels
    for i, (mult, convs) in enumerate(BLOCKS):
        blocks.append(_block(cin, width * mult, convs, pool=i > 0))
        cin = width * mult
    net = MultiExitNetwork(blocks[0], blocks[1:], num_classes, in_channels, input_size, exit_stages)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net
