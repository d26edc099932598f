"""Distillation-based training of multi-exit networks (Phuong & Lampert, ICCV 2019).

    L = (1 - c) sum_k CE(z_k, y) + c sum_{k<K} KL_T(sg z_K || z_k)

T starts at ``initial_temperature`` and is multiplied by ``temperature_growth`` after every
batch in which the batch mean of max softmax(z_K / T) exceeds ``confidence_target``, so the
teacher's soft labels stay soft. T is a buffer: it is saved in checkpoints and resumes exactly.
Under torchrun the confidence is averaged over the processes' equal shares of the batch, so
every process grows T at the same steps as a single process with the whole batch would.
"""
from __future__ import annotations

from typing import Annotated

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ..models.base import MultiExitOutput
from ..options import PositiveFloat, Range, UnitFloat
from .functional import exits_cross_entropy, kl_t
from .registry import register_objective


@register_objective("phuong")
class PhuongLampertObjective(nn.Module):
    """Phuong & Lampert's distillation (see the module's docstring for the loss).

    Args:
        kd_weight: c: the KL's weight; the CE has weight 1 - c.
        initial_temperature: T at the first step.
        temperature_growth: factor T is multiplied by after a batch whose mean teacher confidence
            exceeds confidence_target.
        confidence_target: the batch mean of max softmax(z_K / T) above which T grows.
    """

    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, kd_weight: UnitFloat = 0.5,
                 initial_temperature: PositiveFloat = 1.0,
                 temperature_growth: Annotated[float, Range(1)] = 1.05,
                 confidence_target: UnitFloat = 0.5, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.kd_weight, self.growth, self.confidence_target = kd_weight, temperature_growth, confidence_target
        self.register_buffer("temperature", torch.tensor(float(initial_temperature)))

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets, self.label_smoothing)
        t = float(self.temperature)
        z_last = outputs.exit_logits[-1].detach()
        kd = sum(kl_t(z_last, z, t) for z in outputs.exit_logits[:-1])
        loss = (1 - self.kd_weight) * ce.sum() + self.kd_weight * kd
        if self.training:
            confidence = _mean_over_processes(torch.softmax(z_last / t, dim=-1).max(-1).values.mean())
            if confidence > self.confidence_target:
                self.temperature.mul_(self.growth)
        return loss, {"ce": ce.detach(), "kd": kd.detach(), "temperature": torch.tensor(t)}


def _mean_over_processes(value: Tensor) -> Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
        value = value / dist.get_world_size()
    return value
