"""A trained checkpoint turned back into its model and data, for the evaluation commands."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..config import Config, apply_overrides
from ..engine import build_data, check_compatible, load_checkpoint
from ..engine.data import DataBundle
from ..engine.trainer import build_model, resolve_device
from ..models import MultiExitNetwork


@dataclass
class TrainedModel:
    model: MultiExitNetwork  # eval mode, on ``device``
    config: Config
    data: DataBundle
    device: torch.device
    label: str  # a short name for tables and plots: the run folder's name
    epoch: int  # epochs trained (1-based)

    def class_names(self) -> list[str]:
        names = self.data.splits.class_names
        return list(names) if names else [str(c) for c in range(self.model.num_classes)]


def load_trained(checkpoint: str | Path, overrides: Optional[Sequence[str]] = None) -> TrainedModel:
    path = Path(checkpoint)
    state = load_checkpoint(path)
    config = Config.from_dict(apply_overrides(state["config"], list(overrides or [])))
    device = resolve_device(config.run.device)
    data = build_data(config, device)
    model = build_model(config, data.splits)
    check_compatible(state, model)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    run_dir = path if path.is_dir() else path.parent
    return TrainedModel(model, config, data, device, run_dir.name or path.stem, int(state["epoch"]) + 1)
