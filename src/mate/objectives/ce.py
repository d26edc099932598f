"""Deep supervision: every exit learns the labels, nothing else. L = sum_k CE(z_k, y)."""
from __future__ import annotations

from torch import Tensor, nn

from ..models.base import MultiExitOutput
from .functional import exits_cross_entropy
from .registry import register_objective


@register_objective("ce")
class CrossEntropyObjective(nn.Module):
    """Deep supervision: the sum of the exits' cross-entropies. No option."""

    def __init__(self, num_exits: int, feature_dim: int = 0, num_classes: int = 0, label_smoothing: float = 0.0):
        super().__init__()
        self.num_exits = num_exits
        self.label_smoothing = label_smoothing

    def forward(self, outputs: MultiExitOutput, targets: Tensor, epoch: float = 0.0):
        ce = exits_cross_entropy(outputs.exit_logits, targets, self.label_smoothing)
        return ce.sum(), {"ce": ce.detach()}
