"""SDN-style weighted deep supervision (Kaya et al., ICML 2019, "Shallow-Deep Networks").

    L = sum_k w_k(e) CE(z_k, y),  w_K = 1,  w_k(e) = c_k * min(1, max(0.01, e / R)) for k < K

c_k defaults to 0.9 k / (K - 1) (SDN's linearly increasing weights, 0.15 ... 0.9 for six
internal classifiers); R = ``rampup_epochs`` grows the early exits' weights from 0.01 as SDN
does when training from scratch (0: constant weights).
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.base import MultiExitOutput
from .functional import exits_cross_entropy
from .registry import register_objective


@register_objective("sdn")
class SDNObjective(nn.Module):
    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0,
                 exit_weights: Optional[Sequence[float]] = None, rampup_epochs: float = 0.0):
        super().__init__()
        if exit_weights is None:
            exit_weights = [0.9 * (k + 1) / (num_exits - 1) for k in range(num_exits - 1)] if num_exits > 1 else []
        if len(exit_weights) != num_exits - 1:
            raise ConfigError(f"objective.exit_weights needs {num_exits - 1} values (one per early exit), "
                              f"got {len(exit_weights)}")
        self.register_buffer("exit_weights", torch.tensor(list(exit_weights), dtype=torch.float32),
                             persistent=False)
        self.rampup_epochs = rampup_epochs

    def weights(self, epoch: float) -> Tensor:
        ramp = 1.0 if self.rampup_epochs <= 0 else min(1.0, max(0.01, epoch / self.rampup_epochs))
        return torch.cat([self.exit_weights * ramp, self.exit_weights.new_ones(1)])

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets)
        return (self.weights(epoch) * ce).sum(), {"ce": ce.detach()}
