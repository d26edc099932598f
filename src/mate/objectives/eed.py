"""Ensemble distillation for multi-exit networks (Lee & Lee, 2021): EED and BEED.

EED, as in the authors' released code (hjdw2/Exit-Ensemble-Distillation, its defaults):

    e = sg(mean_k z_k),  f_e = sg(mean_k h_k)
    L = sum_k CE(z_k, y) + w sum_k D(e, z_k) + v sum_k F(h_k, f_e)     every exit, the last included

D is the MSE between logits (``distill="mse"``, the code's default, w = 1) or KL_T
(``distill="kl"``: the code's option, weight 0.1, T^2); F is the code's feature distillation on
the pooled exit features: the squared difference where either side is active (> 0), averaged over
batch and features (``masked_feature_mse``), v = 1.

BEED (the exits' ensemble weighted towards the deeper exits; no released code):

    e = sg(sum_k beta^(k-1) z_k / sum_k beta^(k-1)), f_e likewise from the features
    L = sum_k [(2 - a^(K-k)) CE(z_k, y) + a^(K-k) KL_T(e || z_k)] + v sum_k F(h_k, f_e)

beta = 1.6, a = 1.15, v = 0.1.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..models.base import MultiExitOutput
from ..options import NonNegativeFloat, PositiveFloat
from .functional import exits_cross_entropy, kl_t, masked_feature_mse
from .registry import register_objective


def feature_distillation(features: list[Tensor], target: Tensor) -> Tensor:
    """sum_k F(h_k, target) over every exit, as a K-vector."""
    return torch.stack([masked_feature_mse(h, target) for h in features])


@register_objective("eed")
class EEDObjective(nn.Module):
    """EED: every exit learns the exits' mean (logits and features).

    Args:
        kd_weight: the weight of every exit's logit distillation term.
        temperature: T of the KL (distill="kl").
        distill: "mse" on the logits (the released code's default) or "kl" at temperature T.
        feature_weight: the weight of every exit's feature distillation term.
    """

    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, kd_weight: NonNegativeFloat = 1.0,
                 temperature: PositiveFloat = 3.0, distill: Literal["mse", "kl"] = "mse",
                 feature_weight: NonNegativeFloat = 1.0, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.kd_weight, self.temperature, self.distill = kd_weight, temperature, distill
        self.feature_weight = feature_weight

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets, self.label_smoothing)
        ensemble = outputs.stacked_logits().detach().mean(1)
        if self.distill == "kl":
            kd = torch.stack([kl_t(ensemble, z, self.temperature) for z in outputs.exit_logits])
        else:
            kd = torch.stack([F.mse_loss(z, ensemble) for z in outputs.exit_logits])
        feat = feature_distillation(outputs.exit_features, outputs.stacked_features().detach().mean(1))
        loss = ce.sum() + self.kd_weight * kd.sum() + self.feature_weight * feat.sum()
        return loss, {"ce": ce.detach(), "kd": kd.detach(), "feature": feat.detach()}


@register_objective("beed")
class BEEDObjective(nn.Module):
    """BEED: every exit learns a depth-weighted ensemble of the exits.

    Args:
        beta: the ensemble weighs exit k by beta^k (normalised): deeper exits count more.
        alpha: exit k's KL is weighted alpha^(K-1-k) and its CE 2 - alpha^(K-1-k).
        temperature: T of the KL to the ensemble.
        feature_weight: the weight of every exit's feature distillation term.
    """

    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, beta: PositiveFloat = 1.6,
                 alpha: PositiveFloat = 1.15, temperature: PositiveFloat = 3.0,
                 feature_weight: NonNegativeFloat = 0.1, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.temperature, self.feature_weight = temperature, feature_weight
        k = torch.arange(num_exits, dtype=torch.float32)
        self.register_buffer("ensemble_weights", beta**k / (beta**k).sum(), persistent=False)
        self.register_buffer("kd_weights", alpha ** (num_exits - 1 - k), persistent=False)

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets, self.label_smoothing)
        w = self.ensemble_weights[None, :, None]
        ensemble = (w * outputs.stacked_logits().detach()).sum(1)
        kd = torch.stack([kl_t(ensemble, zk, self.temperature) for zk in outputs.exit_logits])
        feat = feature_distillation(outputs.exit_features, (w * outputs.stacked_features().detach()).sum(1))
        loss = ((2 - self.kd_weights) * ce).sum() + (self.kd_weights * kd).sum() + self.feature_weight * feat.sum()
        return loss, {"ce": ce.detach(), "kd": kd.detach(), "feature": feat.detach()}
