"""The model registry: ``create_model("resnet18", num_classes=10, in_channels=1, width=16)``."""
from __future__ import annotations

from ..registry import Registry

MODELS: Registry = Registry("model")
register_model = MODELS.register


def create_model(name: str, **kwargs):
    return MODELS.create(name, **kwargs)


def list_models() -> list[str]:
    return MODELS.names()
