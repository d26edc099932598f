"""Wide ResNets (Zagoruyko & Komodakis, 2016) as multi-exit networks, one exit per group.

A WRN-d-k has a 16-channel 3x3 stem and three groups of (d - 4) / 6 pre-activation blocks with
16k, 32k and 64k channels. ``width`` is the first group's channel count (16k: 64 for WRN-16-4,
160 for WRN-28-10); the groups double it. The network has three groups, so it has three exits
(after each group; the last is the backbone's own head). The final BN + ReLU of the
pre-activation design belongs to the last group, so every exit reads the group's output as is.
"""
from __future__ import annotations

from typing import Annotated, Optional, Sequence

from torch import Tensor, nn

from ..errors import ConfigError
from ..options import PositiveInt, Range
from .base import MultiExitNetwork
from .registry import register_model

DropoutRate = Annotated[float, Range(0, 1, open_high=True)]


class WideBasicBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-(dropout)-conv3x3 with an identity or 1x1-conv shortcut."""

    def __init__(self, cin: int, cout: int, stride: int, dropout: float):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.shortcut = None if (stride == 1 and cin == cout) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = self.relu(self.bn1(x))
        out = self.conv2(self.dropout(self.relu(self.bn2(self.conv1(pre)))))
        # As in the WRN reference code: a projection shortcut reads the pre-activated input.
        return out + (x if self.shortcut is None else self.shortcut(pre))


def wide_resnet_network(depth: int, num_classes: int, in_channels: int, width: int, input_size: int,
                        exit_stages: Optional[Sequence[int]], dropout: float = 0.0) -> MultiExitNetwork:
    if depth < 10 or (depth - 4) % 6:
        raise ConfigError(f"a wide ResNet's depth must be 6n + 4 with n >= 1 (10, 16, 22, 28, ...), got {depth}")
    n = (depth - 4) // 6
    stem = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
    stages, cin = [], 16
    for i in range(3):
        cout = width * 2**i
        blocks = [WideBasicBlock(cin if j == 0 else cout, cout, 2 if (i > 0 and j == 0) else 1, dropout)
                  for j in range(n)]
        cin = cout
        stages.append(nn.Sequential(*blocks))
    stages[-1].append(nn.BatchNorm2d(cin))
    stages[-1].append(nn.ReLU(inplace=True))
    net = MultiExitNetwork(stem, stages, num_classes, in_channels, input_size, exit_stages)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


@register_model("wide_resnet")
def wide_resnet(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 32,
                exit_stages: Optional[Sequence[int]] = None, depth: int = 16,
                dropout: DropoutRate = 0.0) -> MultiExitNetwork:
    """WRN-depth-k.

    Args:
        width: channels of the first group, 16k (64 for WRN-16-4, 160 for WRN-28-10); the groups double it.
        depth: 6n + 4 (10, 16, 22, 28, ...): n blocks per group.
        dropout: dropout probability between the two convolutions of every block.
    """
    return wide_resnet_network(depth, num_classes, in_channels, width, input_size, exit_stages, dropout)


@register_model("wrn16_4")
def wrn16_4(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 32,
            exit_stages: Optional[Sequence[int]] = None, dropout: DropoutRate = 0.0) -> MultiExitNetwork:
    """WRN-16-4.

    Args:
        width: channels of the first group (64 = 16 x 4); the groups double it.
        dropout: dropout probability between the two convolutions of every block.
    """
    return wide_resnet_network(16, num_classes, in_channels, width, input_size, exit_stages, dropout)


@register_model("wrn28_10")
def wrn28_10(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 160, input_size: int = 32,
             exit_stages: Optional[Sequence[int]] = None, dropout: DropoutRate = 0.0) -> MultiExitNetwork:
    """WRN-28-10.

    Args:
        width: channels of the first group (160 = 16 x 10); the groups double it.
        dropout: dropout probability between the two convolutions of every block.
    """
    return wide_resnet_network(28, num_classes, in_channels, width, input_size, exit_stages, dropout)
