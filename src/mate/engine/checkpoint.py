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

from ..config import Config, apply_overrides, with_imports
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


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
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


def config_from_checkpoint(checkpoint: str | Path | dict[str, Any], overrides: Sequence[str] = (),
                           imports: Sequence[str] = ()) -> Config:
    """The config a checkpoint was trained with, ``section.key=value`` overrides applied, the
    modules ``imports`` added to its own (which are imported, as every config's), validated.

    ``checkpoint``: a .pt file, a run folder (its last.pt), or a state already loaded.
    """
    state = checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint)
    return Config.from_dict(with_imports(apply_overrides(state["config"], list(overrides)), imports))
