"""A trained checkpoint turned back into its model and data, for evaluation and deployment."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..config import Config
from ..data import DataBundle, build_data
from ..models import MultiExitNetwork
from .checkpoint import config_from_checkpoint, load_checkpoint, resolve_checkpoint
from .trainer import build_model, check_compatible, resolve_device


@dataclass
class TrainedModel:
    model: MultiExitNetwork  # eval mode, on ``device``
    config: Config
    data: DataBundle
    device: torch.device
    label: str  # a short name for tables and plots: the run folder's name
    epoch: int  # epochs trained (1-based)
    path: Path  # the checkpoint file read (a run folder's best.pt)

    def class_names(self) -> list[str]:
        names = self.data.splits.class_names
        return list(names) if names else [str(c) for c in range(self.model.num_classes)]


def load_trained(checkpoint: str | Path, overrides: Optional[Sequence[str]] = None) -> TrainedModel:
    """The model of ``checkpoint`` (a .pt file, or a run folder: its best.pt) in eval mode, with its run's data.

    ``overrides`` (``section.key=value``) change the checkpoint's config, e.g. ``data.root=DIR``.
    """
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path, needs=("epoch",))
    config = config_from_checkpoint(state, overrides or ())
    device = resolve_device(config.run.device)
    data = build_data(config.data, device, config.run.seed)
    model = build_model(config, data.splits, pretrained=False)  # the checkpoint's weights replace them
    check_compatible(state, model)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return TrainedModel(model, config, data, device, path.parent.name or path.stem, int(state["epoch"]) + 1, path)
