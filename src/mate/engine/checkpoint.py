"""One checkpoint format: a dict of tensors and plain values written with torch.save.

Writes are atomic (temporary file in the same folder, fsync, rename), so a run killed at any
moment leaves the previous checkpoint intact. Loading uses ``weights_only=True``: a checkpoint
can hold tensors, numbers, strings, lists and dicts, and can never run code. A file that cannot be
loaded so, or that lacks a field (or holds one of another type), is one CheckpointError naming it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import Config, apply_overrides, with_imports
from ..data.image_folder import DEFAULT_IMAGE_SIZE
from ..errors import CheckpointError, MateError
from ..models.pretrained import UnloadableFile, load_safely
from .files import disk_error, replace_atomically


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    try:
        replace_atomically(path, lambda f: torch.save(state, f), "wb")
    except OSError as exc:
        raise MateError(
            f"could not write checkpoint {path}: {disk_error(exc)}. The previous checkpoint in that folder "
            "is untouched; free space (or choose run.out_dir elsewhere) and resume."
        ) from None


# The type of each field a reader may use: every reader uses model and config, and says what else.
FIELD_TYPES = {"model": dict, "config": dict, "epoch": int, "objective": dict, "optimizer": dict, "scheduler": dict,
               "rng_cpu": torch.Tensor, "best_score": float, "best_epoch": int, "train_time": float}
RESUME_FIELDS = ("epoch", "objective", "optimizer", "scheduler", "rng_cpu", "best_score", "best_epoch", "train_time")
_KINDS = {dict: "a mapping", int: "an integer", float: "a number", torch.Tensor: "a tensor"}


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: a file itself; in a run folder its best.pt (the epoch
    selected on validation, which the run's test results report), or last.pt when the run has no
    best.pt yet."""
    path = Path(path)
    if path.is_dir():
        return path / "best.pt" if (path / "best.pt").is_file() else path / "last.pt"
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    needs: Sequence[str] = ()) -> dict[str, Any]:
    """A checkpoint file, or a run folder's (``resolve_checkpoint``), loaded safely. ``model``,
    ``config`` and the fields in ``needs`` (e.g. RESUME_FIELDS) must be there with their types
    (FIELD_TYPES)."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = load_safely(path, map_location)
    except UnloadableFile as exc:
        raise CheckpointError(f"checkpoint {path} cannot be loaded safely: {exc}") from None
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by mate")
    check_fields(state, path, ("model", "config", *needs))
    return state


def check_fields(state: dict[str, Any], path: str | Path, fields: Sequence[str]) -> None:
    """One CheckpointError for the first of ``fields`` that is missing or of another type."""
    for key in fields:
        if key not in state:
            raise CheckpointError(f"checkpoint {path} is malformed: '{key}' is missing")
        kind, value = FIELD_TYPES[key], state[key]
        if not isinstance(value, (int, float) if kind is float else kind) or isinstance(value, bool):
            raise CheckpointError(f"checkpoint {path} is malformed: '{key}' must be {_KINDS[kind]}, "
                                  f"got {type(value).__name__}")
    if not all(isinstance(section, dict) for name, section in state["config"].items() if name != "imports"):
        raise CheckpointError(f"checkpoint {path} is malformed: 'config' must map sections to mappings")


def config_from_checkpoint(checkpoint: str | Path | dict[str, Any], overrides: Sequence[str] = (),
                           imports: Sequence[str] = ()) -> Config:
    """The config a checkpoint was trained with, ``section.key=value`` overrides applied, the
    modules ``imports`` added to its own (which are imported, as every config's), validated.

    ``checkpoint``: a .pt file, a run folder (its best.pt), or a state already loaded.
    """
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    saved = state["config"]
    data = saved.get("data") or {}
    if "input_shape" not in state and data.get("name") == "image_folder" and data.get("image_size") is None:
        # written before image_folder's default side followed the images (and before runs recorded
        # the side they chose): such a run trained at 224 pixels
        saved = {**saved, "data": {**data, "image_size": DEFAULT_IMAGE_SIZE}}
    return Config.from_dict(with_imports(apply_overrides(saved, list(overrides)), imports))
