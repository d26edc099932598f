"""The multi-exit network: backbone stages, one exit after each stage, one forward path.

A network is ``stem -> stage_1 -> ... -> stage_K``. Exit k reads stage k's output. Exits
k < K are BYOT-style bottlenecks that resize the feature map to the last stage's shape; the
last exit is the backbone's own head (pool + Linear). Every exit returns its pooled feature
``h_k`` (what MATE's weight network reads) and its logits ``z_k``. A backbone whose stages
give something else than B x C x H x W maps (a vision transformer's B x N x D tokens) brings
its own exits (``exits=``); everything downstream only calls them.

Callers that run a batch stage by stage (the early-exit predictor) use ``stem``, ``stages``
and ``exits`` directly; ``forward`` is the same loop run to the end.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, List, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError


@dataclass
class MultiExitOutput:
    """Everything a training objective may need from one forward pass."""

    exit_logits: List[Tensor]  # K tensors, B x C
    exit_features: List[Tensor]  # K tensors, B x d (pooled, same d for every exit)

    @property
    def num_exits(self) -> int:
        return len(self.exit_logits)

    def stacked_logits(self) -> Tensor:
        return torch.stack(self.exit_logits, dim=1)  # B x K x C

    def stacked_features(self) -> Tensor:
        return torch.stack(self.exit_features, dim=1)  # B x K x d

    def float(self) -> "MultiExitOutput":
        """The same outputs in float32 (the objectives' arithmetic under mixed precision)."""
        return MultiExitOutput([z.float() for z in self.exit_logits], [h.float() for h in self.exit_features])


def _resize_conv_geometry(in_size: int, out_size: int) -> tuple[int, int]:
    """Kernel/stride and padding of the s x s, stride s conv that maps in_size to out_size.

    method.md's rule is s = in_size / out_size (8, 4, 2 on CIFAR). When the ratio is not an
    integer (28-pixel Fashion-MNIST gives 28, 14, 7 -> 4) we take s = ceil(ratio) and pad
    symmetrically so that floor((in + 2p - s) / s) + 1 == out.
    """
    s = max(1, math.ceil(in_size / out_size))
    p = math.ceil(max(0, out_size * s - in_size) / 2)
    if (in_size + 2 * p - s) // s + 1 != out_size:
        raise ConfigError(
            f"cannot resize a {in_size}-pixel feature map to {out_size} pixels with a strided conv"
        )
    return s, p


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ResizeExit(nn.Module):
    """BYOT exit: 1x1 conv to d/4, s x s conv stride s to d/4, 1x1 conv to d; pool; Linear."""

    def __init__(self, in_channels: int, in_size: int, out_channels: int, out_size: int, num_classes: int):
        super().__init__()
        mid = max(1, out_channels // 4)
        s, p = _resize_conv_geometry(in_size, out_size)
        self.resize = nn.Sequential(
            conv_bn_relu(in_channels, mid, 1),
            conv_bn_relu(mid, mid, s, stride=s, padding=p),
            conv_bn_relu(mid, out_channels, 1),
        )
        self.fc = nn.Linear(out_channels, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feature = torch.flatten(nn.functional.adaptive_avg_pool2d(self.resize(x), 1), 1)
        return feature, self.fc(feature)


class HeadExit(nn.Module):
    """The backbone's own classifier: global average pool and Linear."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(in_channels, num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feature = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        return feature, self.fc(feature)


class MultiExitNetwork(nn.Module):
    """A backbone cut into stages, with one exit after each selected stage.

    Shapes of every stage are found once by a dry run at ``input_size``. Every model factory
    passes its ``exit_stages`` option on, so its meaning is documented here, once.

    Args:
        exit_stages: the stages that carry an exit, counted from 1 (default: all); the last stage
            always has one.
        exits: one module per exit (per selected stage, in order), each mapping its block's output
            to ``(feature, logits)``; by default BYOT resize exits and a ``HeadExit``, built from
            the dry run's shapes. ``feature_dim`` is then the exits' feature size, read from a dry run.

    The *backbone* is the stem and the stages (``backbone_parameters``): what pretrained
    weights fill, and what ``parameter_groups`` can train at a smaller learning rate.

    ``stages`` holds the K *blocks*, not the backbone's stages: block k groups the consecutive
    stages that end where exit k reads (one stage per block when every stage has an exit). The
    attribute keeps its name because checkpoints' state_dict keys (``stages.<k>....``) are made
    from it; renaming it would make every saved checkpoint unloadable.
    """

    def __init__(
        self,
        stem: nn.Module,
        stages: Sequence[nn.Module],
        num_classes: int,
        in_channels: int,
        input_size: int,
        exit_stages: Optional[Sequence[int]] = None,
        exits: Optional[Sequence[nn.Module]] = None,
    ):
        super().__init__()
        self.stem = stem
        num_stages = len(stages)
        if exit_stages is None:
            exit_stages = list(range(1, num_stages + 1))
        exit_stages = sorted(set(int(s) for s in exit_stages))
        if not exit_stages or exit_stages[0] < 1 or exit_stages[-1] > num_stages:
            raise ConfigError(
                f"exit_stages must be stage numbers in 1..{num_stages}, got {list(exit_stages)}"
            )
        if exit_stages[-1] != num_stages:
            exit_stages.append(num_stages)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.input_size = input_size
        self.exit_stages = exit_stages

        # Group consecutive stages so that block k ends where exit k reads.
        blocks, start = [], 0
        for end in exit_stages:
            group = list(stages[start:end])
            blocks.append(group[0] if len(group) == 1 else nn.Sequential(*group))
            start = end
        self.stages = nn.ModuleList(blocks)

        shapes = self._dry_run_shapes(in_channels, input_size)
        if exits is None:
            out_c, out_h = shapes[-1][0], shapes[-1][1]
            self.feature_dim = out_c
            exits = [ResizeExit(c, h, out_c, out_h, num_classes) for c, h, _ in shapes[:-1]]
            exits.append(HeadExit(out_c, num_classes))
            self.exits = nn.ModuleList(exits)
        else:
            if len(exits) != len(blocks):
                raise ConfigError(f"{len(exits)} exits given for {len(blocks)} exit stages {exit_stages}")
            self.exits = nn.ModuleList(exits)
            self.feature_dim = self._dry_run_feature_dim(in_channels, input_size)
        self.stage_shapes = [tuple(s) for s in shapes]
        self.gradient_equilibrium = False  # set by create_model (models/registry.common_options)

    @torch.no_grad()
    def _dry_run_shapes(self, in_channels: int, input_size: int) -> list[tuple[int, ...]]:
        """Each block's output shape without the batch axis: (C, H, W) for feature maps."""
        was_training = self.training
        self.eval()
        x = torch.zeros(1, in_channels, input_size, input_size)
        shapes = []
        x = self.stem(x)
        for k, block in enumerate(self.stages, start=1):
            x = block(x)
            if not isinstance(x, Tensor):
                raise ConfigError(f"stage {k} of the backbone returns a {type(x).__name__}, not a tensor; "
                                  "a multi-exit network needs one tensor between two stages")
            shapes.append(tuple(x.shape[1:]))
        self.train(was_training)
        return shapes

    @torch.no_grad()
    def _dry_run_feature_dim(self, in_channels: int, input_size: int) -> int:
        """The size of the exits' features (the same for every exit, as MATE's weight network needs)."""
        was_training = self.training
        self.eval()
        x = self.stem(torch.zeros(1, in_channels, input_size, input_size))
        dims = []
        for block, exit_ in zip(self.stages, self.exits):
            x = block(x)
            feature, _ = exit_(x)
            dims.append(feature.shape[-1])
        self.train(was_training)
        if len(set(dims)) != 1:
            raise ConfigError(f"every exit must give features of one size; these give {dims}")
        return dims[0]

    @property
    def num_exits(self) -> int:
        return len(self.exits)

    def backbone_parameters(self) -> List[nn.Parameter]:
        """The stem's and the stages' parameters: the backbone that pretrained weights fill."""
        return list(nn.ModuleList([self.stem, self.stages]).parameters())

    def parameter_groups(self, lr: float, backbone_lr_scale: float = 1.0,
                         others: Iterable[nn.Parameter] = ()) -> List[dict]:
        """Optimizer parameter groups: the exits and ``others`` (an objective's parameters) at
        ``lr``, the backbone at ``lr * backbone_lr_scale`` (fine-tuning pretrained weights).

        With a scale of 1 there is one group, the model's parameters then ``others``: the same
        optimizer (and checkpointed optimizer state) as ``[*model.parameters(), *others]``.
        """
        others = list(others)
        if backbone_lr_scale == 1.0:
            return [{"params": [*self.parameters(), *others], "lr": lr}]
        backbone = self.backbone_parameters()
        in_backbone = {id(p) for p in backbone}
        head = [p for p in self.parameters() if id(p) not in in_backbone]
        return [{"params": head + others, "lr": lr}, {"params": backbone, "lr": lr * backbone_lr_scale}]

    def forward(self, x: Tensor) -> MultiExitOutput:
        logits, features = [], []
        x = self.stem(x)
        equilibrium = self.gradient_equilibrium and torch.is_grad_enabled()
        k = self.num_exits
        for i, (block, exit_) in enumerate(zip(self.stages, self.exits)):
            x = block(x)
            if equilibrium:  # IMTA's models/msdnet_ge.py: 1/(K-i) for both paths, then x (K-i-1) deeper
                x = scale_gradient(x, 1.0 / (k - i))
            feature, z = exit_(x)
            features.append(feature)
            logits.append(z)
            if equilibrium and i < k - 1:
                x = scale_gradient(x, float(k - i - 1))
        return MultiExitOutput(exit_logits=logits, exit_features=features)


class _ScaleGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, factor: float) -> Tensor:
        ctx.factor = factor
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor):
        return grad * ctx.factor, None


def scale_gradient(x: Tensor, factor: float) -> Tensor:
    """Identity forward; the gradient is multiplied by ``factor`` on the way back."""
    return _ScaleGradient.apply(x, factor)
