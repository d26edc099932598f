"""BYOT, "Be Your Own Teacher" (Zhang et al., ICCV 2019).

    L = (1 - a) sum_k CE(z_k, y) + a sum_{k<K} KL_T(sg z_K || z_k) + b sum_{k<K} ||h_k - sg h_K||^2

The feature hint compares pooled exit features (B x d); ||.||^2 is summed over the batch and the
feature dimension (not averaged), which is the normalisation b = 1e-6 refers to.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..models.base import MultiExitOutput
from .functional import exits_cross_entropy, kl_t
from .registry import register_objective


@register_objective("byot")
class BYOTObjective(nn.Module):
    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, kd_weight: float = 0.1,
                 temperature: float = 3.0, feature_weight: float = 1e-6):
        super().__init__()
        self.num_exits, self.kd_weight, self.temperature, self.feature_weight = (
            num_exits, kd_weight, temperature, feature_weight)

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets)
        z_last, h_last = outputs.exit_logits[-1].detach(), outputs.exit_features[-1].detach()
        kd = sum(kl_t(z_last, z, self.temperature) for z in outputs.exit_logits[:-1])
        hint = sum(((h - h_last) ** 2).sum() for h in outputs.exit_features[:-1])
        a = self.kd_weight
        loss = (1 - a) * ce.sum() + a * kd + self.feature_weight * hint
        return loss, {"ce": ce.detach(), "kd": kd.detach(), "feature_hint": hint.detach()}
