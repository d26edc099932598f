"""SDN-style weighted deep supervision (Kaya et al., ICML 2019, "Shallow-Deep Networks").

    L = sum_k w_k(e) CE(z_k, y),  w_K = 1,  w_k(e) = min(c_k, 0.01 + (floor(e) + 1) c_k / R)  for k < K

as in the authors' released code (yigitcankaya/Shallow-Deep-Networks, ``sdn_train``): the internal
classifiers' weights grow linearly, epoch by epoch, from about 0.01 to c_k over the whole run
(R = the run's epochs, the default), and stay at c_k after R epochs. c_k defaults to
0.9 k / (K - 1) (the code's 0.15 ... 0.9 for six internal classifiers). ``rampup_epochs=0``
keeps the weights at c_k from the start.
"""
from __future__ import annotations

import math
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.base import MultiExitOutput
from ..options import NonNegativeFloat
from .functional import exits_cross_entropy
from .registry import register_objective


@register_objective("sdn")
class SDNObjective(nn.Module):
    """SDN's weighted deep supervision (see the module's docstring for the loss).

    Args:
        exit_weights: c_k, the final weights of the K - 1 early exits' CE; default 0.9 k / (K - 1).
        rampup_epochs: R, the epochs over which the weights grow to c_k; null: the run's epochs;
            0: c_k from the start.
    """

    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0,
                 exit_weights: Optional[Sequence[NonNegativeFloat]] = None,
                 rampup_epochs: Optional[NonNegativeFloat] = None,
                 total_epochs: int = 0, label_smoothing: float = 0.0):
        super().__init__()
        self.label_smoothing = label_smoothing
        if exit_weights is None:
            exit_weights = [0.9 * (k + 1) / (num_exits - 1) for k in range(num_exits - 1)] if num_exits > 1 else []
        if len(exit_weights) != num_exits - 1:
            raise ConfigError(f"objective.exit_weights needs {num_exits - 1} values (one per early exit), "
                              f"got {len(exit_weights)}")
        self.register_buffer("exit_weights", torch.tensor(list(exit_weights), dtype=torch.float32),
                             persistent=False)
        self.rampup_epochs = float(total_epochs if rampup_epochs is None else rampup_epochs)

    def weights(self, epoch: float) -> Tensor:
        """[w_1(e), ..., w_{K-1}(e), 1]; constant within an epoch, as in the released code."""
        c = self.exit_weights
        if self.rampup_epochs > 0:
            c = torch.minimum(c, 0.01 + (math.floor(epoch) + 1) * c / self.rampup_epochs)
        return torch.cat([c, c.new_ones(1)])

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets, self.label_smoothing)
        return (self.weights(epoch) * ce).sum(), {"ce": ce.detach()}
