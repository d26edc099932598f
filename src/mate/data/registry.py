"""The dataset registry: ``load_dataset("fashion_mnist", root=None, download=True)``."""
from __future__ import annotations

from ..registry import Registry

DATASETS: Registry = Registry("dataset")
register_dataset = DATASETS.register


def load_dataset(name: str, **kwargs):
    return DATASETS.create(name, **kwargs)


def list_datasets() -> list[str]:
    return DATASETS.names()
