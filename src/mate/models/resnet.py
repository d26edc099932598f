"""CIFAR-style ResNets (3x3 stem, no max-pool) as multi-exit networks, one exit per stage.

``width`` is the channel count of the first stage (64 in the standard ResNet); stages double
it. The exits are those of method.md (BYOT): stage k's output is resized to the last stage's.
"""
from __future__ import annotations

from typing import Optional, Sequence, Type, Union

from torch import Tensor, nn

from ..options import PositiveInt
from .base import MultiExitNetwork
from .registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = _shortcut(cin, planes * self.expansion, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


def _shortcut(cin: int, cout: int, stride: int) -> nn.Module:
    if stride == 1 and cin == cout:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def cifar_resnet(
    block: Type[Union[BasicBlock, Bottleneck]],
    depths: Sequence[int],
    num_classes: int,
    in_channels: int,
    width: int,
    input_size: int,
    exit_stages: Optional[Sequence[int]],
) -> MultiExitNetwork:
    stem = nn.Sequential(
        nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)
    )
    stages, cin = [], width
    for i, depth in enumerate(depths):
        planes = width * 2**i
        layers = []
        for j in range(depth):
            layers.append(block(cin, planes, stride=2 if (i > 0 and j == 0) else 1))
            cin = planes * block.expansion
        stages.append(nn.Sequential(*layers))
    net = MultiExitNetwork(stem, stages, num_classes, in_channels, input_size, exit_stages)
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


@register_model("resnet18")
def resnet18(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 32,
             exit_stages: Optional[Sequence[int]] = None) -> MultiExitNetwork:
    """ResNet-18 (basic blocks, 2-2-2-2).

    Args:
        width: channels of the first stage (64 in the standard network); the stages double it.
    """
    return cifar_resnet(BasicBlock, (2, 2, 2, 2), num_classes, in_channels, width, input_size, exit_stages)


@register_model("resnet34")
def resnet34(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 32,
             exit_stages: Optional[Sequence[int]] = None) -> MultiExitNetwork:
    """ResNet-34 (basic blocks, 3-4-6-3).

    Args:
        width: channels of the first stage (64 in the standard network); the stages double it.
    """
    return cifar_resnet(BasicBlock, (3, 4, 6, 3), num_classes, in_channels, width, input_size, exit_stages)


@register_model("resnet50")
def resnet50(num_classes: int = 100, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 32,
             exit_stages: Optional[Sequence[int]] = None) -> MultiExitNetwork:
    """ResNet-50 (bottleneck blocks, 3-4-6-3).

    Args:
        width: planes of the first stage (64 in the standard network; its blocks put out 4x as many
            channels); the stages double it.
    """
    return cifar_resnet(Bottleneck, (3, 4, 6, 3), num_classes, in_channels, width, input_size, exit_stages)
