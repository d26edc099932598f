"""ImageNet-style ResNet-18/50 (7x7 stride-2 stem and max-pool) for 224-pixel input, one exit per stage.

The backbone is torchvision's ``resnet18`` / ``resnet50`` (built with ``weights=None``: nothing is
ever downloaded), cut into its stem (conv1, bn1, relu, maxpool) and its four stages layer1..layer4;
exits sit at the stage ends, the last exit (pool + Linear) replacing torchvision's ``fc``. At 224
pixels the stages give 56, 28, 14 and 7-pixel maps, so the exits' resize strides are 8, 4, 2 as on
CIFAR. Parameter names inside ``stem``/``stages`` follow torchvision's modules, so a user can copy
torchvision weights in when ``width`` is 64 and ``in_channels`` is 3.

``width`` is the first stage's channel count (64 in the published networks); other widths rebuild
the stages with torchvision's own ``_make_layer`` so that the blocks stay torchvision's.
"""
from __future__ import annotations

from typing import Optional, Sequence

from torch import nn

from .base import MultiExitNetwork
from .registry import register_model


def imagenet_resnet(arch: str, num_classes: int, in_channels: int, width: int, input_size: int,
                    exit_stages: Optional[Sequence[int]]) -> MultiExitNetwork:
    import torchvision  # here, not at import: importing mate stays quick

    tv = getattr(torchvision.models, arch)(weights=None)
    if in_channels != 3 or width != 64:
        tv.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        tv.bn1 = nn.BatchNorm2d(width)
    if width != 64:
        block = type(tv.layer1[0])
        depths = [len(getattr(tv, f"layer{i}")) for i in range(1, 5)]
        tv.inplanes = width
        for i, depth in enumerate(depths):
            setattr(tv, f"layer{i + 1}", tv._make_layer(block, width * 2**i, depth, stride=1 if i == 0 else 2))
    stem = nn.Sequential(tv.conv1, tv.bn1, tv.relu, tv.maxpool)
    stages = [tv.layer1, tv.layer2, tv.layer3, tv.layer4]
    net = MultiExitNetwork(stem, stages, num_classes, in_channels, input_size, exit_stages)
    for m in net.exits.modules():
        if isinstance(m, nn.Conv2d):  # the backbone keeps torchvision's initialisation
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


@register_model("imagenet_resnet18")
def imagenet_resnet18(num_classes: int = 1000, in_channels: int = 3, width: int = 64, input_size: int = 224,
                      exit_stages: Optional[Sequence[int]] = None) -> MultiExitNetwork:
    return imagenet_resnet("resnet18", num_classes, in_channels, width, input_size, exit_stages)


@register_model("imagenet_resnet50")
def imagenet_resnet50(num_classes: int = 1000, in_channels: int = 3, width: int = 64, input_size: int = 224,
                      exit_stages: Optional[Sequence[int]] = None) -> MultiExitNetwork:
    return imagenet_resnet("resnet50", num_classes, in_channels, width, input_size, exit_stages)
