"""Ensemble distillation for multi-exit networks (Lee & Lee, 2021): EED and BEED.

EED:   e = sg(mean_k z_k);  L = sum_k CE(z_k, y) + w sum_k D(e, z_k), every exit including the last,
       with D = KL_T (default, w = 0.1) or the MSE between logits (``distill="mse"``).
BEED:  e = sg(sum_k beta^(k-1) z_k / sum_k beta^(k-1));
       L = sum_k [(2 - a^(K-k)) CE(z_k, y) + a^(K-k) KL_T(e || z_k)],  beta = 1.6, a = 1.15.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.base import MultiExitOutput
from .functional import exits_cross_entropy, kl_t
from .registry import register_objective


@register_objective("eed")
class EEDObjective(nn.Module):
    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, kd_weight: float = 0.1,
                 temperature: float = 3.0, distill: str = "kl"):
        super().__init__()
        if distill not in ("kl", "mse"):
            raise ConfigError(f"objective.distill must be 'kl' or 'mse', got {distill!r}")
        self.kd_weight, self.temperature, self.distill = kd_weight, temperature, distill

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets)
        ensemble = outputs.stacked_logits().detach().mean(1)
        if self.distill == "kl":
            kd = torch.stack([kl_t(ensemble, z, self.temperature) for z in outputs.exit_logits])
        else:
            kd = torch.stack([F.mse_loss(z, ensemble) for z in outputs.exit_logits])
        loss = ce.sum() + self.kd_weight * kd.sum()
        return loss, {"ce": ce.detach(), "kd": kd.detach()}


@register_objective("beed")
class BEEDObjective(nn.Module):
    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, beta: float = 1.6,
                 alpha: float = 1.15, temperature: float = 3.0):
        super().__init__()
        self.temperature = temperature
        k = torch.arange(num_exits, dtype=torch.float32)
        self.register_buffer("ensemble_weights", beta**k / (beta**k).sum(), persistent=False)
        self.register_buffer("kd_weights", alpha ** (num_exits - 1 - k), persistent=False)

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets)
        z = outputs.stacked_logits()
        ensemble = (self.ensemble_weights[None, :, None] * z.detach()).sum(1)
        kd = torch.stack([kl_t(ensemble, zk, self.temperature) for zk in outputs.exit_logits])
        loss = ((2 - self.kd_weights) * ce).sum() + (self.kd_weights * kd).sum()
        return loss, {"ce": ce.detach(), "kd": kd.detach()}
