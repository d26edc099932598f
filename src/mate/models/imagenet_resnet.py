"""ImageNet-style ResNet-18/50 (7x7 stride-2 stem and max-pool) for 224-pixel input, one exit per stage.

The backbone is torchvision's ``resnet18`` / ``resnet50`` (built with ``weights=None``; only
``pretrained=true`` downloads anything), cut into its stem (conv1, bn1, relu, maxpool) and its four
stages layer1..layer4; exits sit at the stage ends, the last exit (pool + Linear) replacing
torchvision's ``fc``. At 224 pixels the stages give 56, 28, 14 and 7-pixel maps, so the exits'
resize strides are 8, 4, 2 as on CIFAR.

``pretrained`` fills the backbone with torchvision's weights (a state dict file of the same network,
or ``true`` for torchvision's own ImageNet weights, downloaded by it), or with the backbone of a
mate checkpoint of the same model (``models/pretrained.py``). torchvision's weights need ``width``
64 and ``in_channels`` 3.

``width`` is the first stage's channel count (64 in the published networks); other widths rebuild
the stages with torchvision's own ``_make_layer`` so that the blocks stay torchvision's.
"""
from __future__ import annotations

from typing import Optional, Sequence, Union

from torch import nn

from ..options import PositiveInt
from .base import MultiExitNetwork
from .pretrained import download_failed, load_checkpoint_backbone, load_weights, read_weights, under
from .registry import register_model


def imagenet_resnet(arch: str, num_classes: int, in_channels: int, width: int, input_size: int,
                    exit_stages: Optional[Sequence[int]], pretrained: Union[bool, str] = False) -> MultiExitNetwork:
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
    if pretrained is not False:
        load_torchvision_weights(net, tv, arch, pretrained)
    return net


def load_torchvision_weights(net: MultiExitNetwork, tv: nn.Module, arch: str, pretrained: Union[bool, str]) -> None:
    """torchvision's ``arch`` weights (its download, or a file) or a mate checkpoint's backbone.

    The stem and stages are torchvision's modules themselves, so weights loaded into ``tv`` by
    torchvision's names are the network's; ``fc``, torchvision's classifier, is not loaded.
    """
    what = f"torchvision's {arch}"
    if pretrained is True:
        import torchvision
        try:
            state = torchvision.models.get_model_weights(arch).DEFAULT.get_state_dict(progress=False)
        except OSError as exc:  # URLError and the like: offline, or the server unreachable
            raise download_failed("torchvision", arch, exc) from None
        source = "true"
    else:
        state, from_mate = read_weights(pretrained)
        if from_mate:
            load_checkpoint_backbone(net, state, pretrained, f"imagenet_{arch}")
            return
        source = pretrained
    load_weights(tv, state, source, what, ignore=under("fc"),
                 hint=f"Pass the state dict of torchvision.models.{arch}() (which needs model.width=64 and "
                      "3-channel images), or a mate checkpoint of this model.")


@register_model("imagenet_resnet18")
def imagenet_resnet18(num_classes: int = 1000, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 224,
                      exit_stages: Optional[Sequence[int]] = None,
                      pretrained: Union[bool, str] = False) -> MultiExitNetwork:
    """torchvision's ResNet-18.

    Args:
        width: channels of the stem and the first stage (64 in the published network); the stages double it.
        pretrained: false; true for torchvision's ImageNet weights (downloaded); or a file: a state dict
            of torchvision's resnet18 or a mate checkpoint of this model (its backbone).
    """
    return imagenet_resnet("resnet18", num_classes, in_channels, width, input_size, exit_stages, pretrained)


@register_model("imagenet_resnet50")
def imagenet_resnet50(num_classes: int = 1000, in_channels: int = 3, width: PositiveInt = 64, input_size: int = 224,
                      exit_stages: Optional[Sequence[int]] = None,
                      pretrained: Union[bool, str] = False) -> MultiExitNetwork:
    """torchvision's ResNet-50.

    Args:
        width: channels of the stem and planes of the first stage (64 in the published network); the
            stages double it.
        pretrained: false; true for torchvision's ImageNet weights (downloaded); or a file: a state dict
            of torchvision's resnet50 or a mate checkpoint of this model (its backbone).
    """
    return imagenet_resnet("resnet50", num_classes, in_channels, width, input_size, exit_stages, pretrained)
