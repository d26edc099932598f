"""One checkpoint format: a dict of tensors and plain values written with torch.save.

Writes are atomic (temporary file in the same folder, fsync, rename), so a run killed at any
moment leaves the previous checkpoint intact. Loading uses ``weights_only=True``: a checkpoint
can hold tensors, numbers, strings, lists and dicts, and can never run code.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch

from ..config import Config, apply_overrides
from ..data.image_folder import DEFAULT_IMAGE_SIZE
from ..errors import CheckpointError, MateError


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        reason = "the disk is full" if exc.errno == errno.ENOSPC else exc.strerror or str(exc)
        raise MateError(
            f"could not write checkpoint {path}: {reason}. The previous checkpoint in that folder "
            "is untouched; free space (or choose run.out_dir elsewhere) and resume."
        ) from None
    try:  # make the rename itself durable
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass


def resolve_checkpoint(path: str | Path) -> Path:
    """The checkpoint file ``path`` names: a file itself; in a run folder its best.pt (the epoch
    selected on validation, which the run's test results report), or last.pt when the run has no
    best.pt yet."""
    path = Path(path)
    if path.is_dir():
        return path / "best.pt" if (path / "best.pt").is_file() else path / "last.pt"
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint file, or a run folder's (``resolve_checkpoint``)."""
    path = resolve_checkpoint(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, forbidden pickle global, ...
        raise CheckpointError(
            f"checkpoint {path} cannot be loaded safely ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "It is corrupt, truncated, or holds objects other than tensors and plain values."
        ) from None
    if not isinstance(state, dict) or "model" not in state or "config" not in state:
        raise CheckpointError(f"{path} is not a checkpoint written by mate")
    return state


def config_from_checkpoint(checkpoint: str | Path | dict[str, Any], overrides: Sequence[str] = ()) -> Config:
    """The config a checkpoint was trained with, ``section.key=value`` overrides applied, validated.

    ``checkpoint``: a .pt file, a run folder (its best.pt), or a state already loaded.
    """
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    saved = state["config"]
    data = saved.get("data") or {}
    if "input_shape" not in state and data.get("name") == "image_folder" and data.get("image_size") is None:
        # written before image_folder's default side followed the images (and before runs recorded
        # the side they chose): such a run trained at 224 pixels
        saved = {**saved, "data": {**data, "image_size": DEFAULT_IMAGE_SIZE}}
    return Config.from_dict(apply_overrides(saved, list(overrides)))
