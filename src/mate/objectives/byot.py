"""BYOT, "Be Your Own Teacher" (Zhang et al., ICCV 2019; journal version TPAMI 2021).

Two recipes exist, and both are options of this objective:

* the authors' released code (ArchipLab-LinfengZhang/pytorch-self-distillation-final), the default:

      L = CE(z_K, y) + sum_{k<K} [(1 - a) CE(z_k, y) + a KL_T(sg z_K || z_k)]
          + b sum_{k<K-1} || A_k(h_k) - sg h_K ||_2

  a = 0.3, T = 3 without the T^2 factor, b = 0.03; A_k is a Linear(d, d) adaptation layer
  trained with the network, and ||.||_2 is the L2 norm of the whole B x d difference
  (``torch.dist``). The released code skips the feature term for the exit just below the last
  one (its loop index 1 in deepest-first order), and so does this objective.
  The code's soft-label term is the cross-entropy to softmax(sg z_K / T), which differs from the
  KL by the teacher's entropy: a constant, so the gradients are the same.

* a widely used public reimplementation (luanyunteng/pytorch-be-your-own-teacher), the variant
  ``byot_reimpl`` in configs/methods.yaml:

      L = (1 - a) sum_k CE(z_k, y) + a sum_{k<K} KL_T(sg z_K || z_k) + b sum_{k<K} ||h_k - sg h_K||^2

  a = 0.1, KL with T^2, b = 1e-6 on the squared distance summed over batch and features.
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.base import MultiExitOutput
from ..options import NonNegativeFloat, PositiveFloat, UnitFloat
from .functional import exits_cross_entropy, kl_t
from .registry import register_objective


@register_objective("byot")
class BYOTObjective(nn.Module):
    """BYOT (see the module's docstring for the loss).

    Args:
        kd_weight: a: the early exits' KL weight; their CE (and under last_ce_weight="shared", every
            CE) is weighted 1 - a.
        temperature: T of the KL to the last exit.
        t_squared: multiply the KL by T^2.
        last_ce_weight: "one" (the last exit's CE has weight 1) or "shared" (every CE has 1 - a).
        feature_weight: b, the weight of the feature term.
        feature_loss: "adapted_l2" (the authors' code: L2 distance after a Linear adaptation layer) or
            "squared" (the reimplementation: squared distance, no adaptation).
    """

    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, kd_weight: UnitFloat = 0.3,
                 temperature: PositiveFloat = 3.0, t_squared: bool = False,
                 last_ce_weight: Literal["one", "shared"] = "one", feature_weight: NonNegativeFloat = 0.03,
                 feature_loss: Literal["adapted_l2", "squared"] = "adapted_l2", label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        self.num_exits, self.kd_weight, self.temperature = num_exits, kd_weight, temperature
        self.t_squared, self.last_ce_weight = t_squared, last_ce_weight
        self.feature_weight, self.feature_loss = feature_weight, feature_loss
        # Exits that get the adapted feature term: all but the last two (see the module docstring).
        self.adapted_exits = list(range(max(0, num_exits - 2))) if feature_loss == "adapted_l2" else []
        if self.adapted_exits and feature_dim <= 0:
            raise ConfigError("objective 'byot' with feature_loss=adapted_l2 needs the model's feature_dim")
        self.adapters = nn.ModuleList(nn.Linear(feature_dim, feature_dim) for _ in self.adapted_exits)

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        a = self.kd_weight
        ce = exits_cross_entropy(outputs.exit_logits, targets, self.label_smoothing)
        z_last, h_last = outputs.exit_logits[-1].detach(), outputs.exit_features[-1].detach()
        kd = sum(kl_t(z_last, z, self.temperature) for z in outputs.exit_logits[:-1])
        if not self.t_squared:
            kd = kd / self.temperature**2
        if self.feature_loss == "squared":
            hint = sum(((h - h_last) ** 2).sum() for h in outputs.exit_features[:-1])
        else:
            hint = sum((torch.dist(adapter(outputs.exit_features[k]), h_last)
                        for k, adapter in zip(self.adapted_exits, self.adapters)), ce.new_zeros(()))
        if self.last_ce_weight == "one":
            ce_term = ce[-1] + (1 - a) * ce[:-1].sum()
        else:
            ce_term = (1 - a) * ce.sum()
        loss = ce_term + a * kd + self.feature_weight * hint
        return loss, {"ce": ce.detach(), "kd": kd.detach(), "feature_hint": hint.detach()}
