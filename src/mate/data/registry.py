"""The dataset registry: ``load_dataset("fashion_mnist", root=None, download=True)``.

A dataset with a fixed shape registers it (``DatasetInfo``), so that a model can be built for
it, e.g. by ``mate flops``, without reading a single file.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

from ..registry import Registry

F = TypeVar("F", bound=Callable)

DATASETS: Registry = Registry("dataset")
_INFO: dict[str, "DatasetInfo"] = {}


@dataclass(frozen=True)
class DatasetInfo:
    """What a model needs to know about a dataset: its classes and the shape of one input."""

    num_classes: int
    in_channels: int
    input_size: int  # side of the square input (datasets of image files: the default crop side)
    image_files: bool = False  # decoded from image files, so data.image_size can resize them


def register_dataset(name: str, info: Optional[DatasetInfo] = None) -> Callable[[F], F]:
    """Decorator: register a dataset builder under ``name``, with its fixed shape when it has one."""
    register = DATASETS.register(name)

    def decorator(factory: F) -> F:
        register(factory)
        if info is not None:
            _INFO[name] = info
        return factory

    return decorator


def registered_info(name: str) -> Optional[DatasetInfo]:
    """The shape ``name`` registered, or None when only its files can tell (e.g. image_folder)."""
    DATASETS.get(name)  # an unknown name is the registry's usual error
    return _INFO.get(name)


def load_dataset(name: str, **kwargs):
    return DATASETS.create(name, **kwargs)


def list_datasets() -> list[str]:
    return DATASETS.names()
