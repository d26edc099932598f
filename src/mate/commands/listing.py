"""``mate list``: the registered models, objectives and datasets."""
from __future__ import annotations

from ..data import list_datasets
from ..models import list_models
from ..objectives import list_objectives


def list_command() -> int:
    print("models:     " + ", ".join(list_models()))
    print("objectives: " + ", ".join(list_objectives()))
    print("datasets:   " + ", ".join(list_datasets()))
    return 0
