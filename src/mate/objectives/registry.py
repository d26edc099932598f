"""The objective registry: ``create_objective("mate", num_exits=4, feature_dim=512, ...)``.

Every objective is an ``nn.Module`` called as ``loss, logs = objective(outputs, targets, epoch)``.
``epoch`` is a float (epoch index plus the fraction of it done) so ramp-ups are smooth and a
resumed run sees the same value. ``logs`` maps names to detached tensors that the engine
averages over an epoch. Constructors receive ``num_exits``, ``feature_dim`` and
``num_classes`` from the model (and, when they accept them, ``total_epochs`` from
``optim.epochs`` and ``label_smoothing`` from ``optim.label_smoothing``, which an objective
passes to ``exits_cross_entropy``); every other argument is a config option.
"""
from __future__ import annotations

from ..registry import Registry

OBJECTIVES: Registry = Registry("objective")
register_objective = OBJECTIVES.register


def create_objective(name: str, **kwargs):
    return OBJECTIVES.create(name, **kwargs)


def list_objectives() -> list[str]:
    return OBJECTIVES.names()
