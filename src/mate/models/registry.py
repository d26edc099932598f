"""The model registry: ``create_model("resnet18", num_classes=10, in_channels=1, width=16)``.

Besides each architecture's own options, every model takes the options of ``common_options``
(they act on the multi-exit network, whatever its backbone). A factory documents its options
under ``Args:`` in its docstring; ``exit_stages``, which every factory passes on to
``MultiExitNetwork``, is documented there.
"""
from __future__ import annotations

import inspect
from typing import Any, Dict

from ..options import documented_args
from ..registry import Registry
from .base import MultiExitNetwork


def common_options(gradient_equilibrium: bool = False) -> None:
    """Options every multi-exit network has.

    Args:
        gradient_equilibrium: IMTA's gradient equilibrium (Li et al., ICCV 2019): the gradient that
            flows from the deeper network and from exit k back into stage k is rescaled so that
            every stage receives the mean, not the sum, of the gradients of the exits that read it.
    """


COMMON_OPTIONS = inspect.signature(common_options, eval_str=True).parameters


class ModelRegistry(Registry):
    def options(self, name: str) -> Dict[str, inspect.Parameter]:
        return {**super().options(name), **COMMON_OPTIONS}

    def meanings(self, name: str) -> Dict[str, str]:
        shared = {**documented_args(MultiExitNetwork), **documented_args(common_options)}
        options = self.options(name)
        return {**{k: v for k, v in shared.items() if k in options}, **super().meanings(name)}

    def create(self, name: str, **kwargs: Any) -> Any:
        common = {k: kwargs.pop(k) for k in list(kwargs) if k in COMMON_OPTIONS}
        net = super().create(name, **kwargs)
        net.gradient_equilibrium = bool(common.get("gradient_equilibrium", False))
        return net


MODELS: ModelRegistry = ModelRegistry("model")
register_model = MODELS.register


def create_model(name: str, **kwargs):
    return MODELS.create(name, **kwargs)


def list_models() -> list[str]:
    return MODELS.names()
