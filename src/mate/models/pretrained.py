"""Pretrained backbone weights: the ``pretrained`` option of the models that take one.

``pretrained`` is

- ``false``: the backbone keeps its random initialisation;
- a path: a local file, either a state dict of the backbone's own library (timm, torchvision),
  saved with ``torch.save`` or as ``.safetensors``, or a mate checkpoint (``best.pt``,
  ``last.pt``) whose backbone (stem and stages) has this model's architecture and exit levels;
- ``true``: the library's own published weights, downloaded by it (or found in its cache). Without
  internet access this fails with one error that asks for a file instead.

Only the backbone is loaded. The file's classifier is ignored and every exit starts from its
initialisation. Whatever does not fit (keys the model needs and the file lacks, keys the file
has and the model does not, tensors of another shape) is reported in one ``ConfigError``.
"""
from __future__ import annotations

import pickle
import re
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import ConfigError

StateDict = Mapping[str, Tensor]


class UnloadableFile(ValueError):
    """A file torch.load(weights_only=True) refuses; the message says why, in words."""


def load_safely(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values, never code. The one place
    mate reads a .pt file (checkpoints and pretrained weights alike). A refusal is UnloadableFile,
    whose message never repeats torch's advice to load the file with weights_only=False: that
    would run whatever code the file holds."""
    try:
        with warnings.catch_warnings():  # e.g. torch's note on the pickle protocol: the error says it all
            warnings.simplefilter("ignore")
            return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated zip, forbidden pickle global, random bytes, ...
        if Path(path).stat().st_size == 0:
            raise UnloadableFile("the file is empty") from None
        if isinstance(exc, pickle.UnpicklingError):
            forbidden = re.search(r"GLOBAL ([\w.]+)", str(exc))
            if forbidden:
                raise UnloadableFile(
                    f"it holds a Python object ({forbidden.group(1)}) that only running code could rebuild; "
                    "a checkpoint written by mate holds tensors and plain values only") from None
        raise UnloadableFile("it is not a PyTorch file of tensors and plain values (it is truncated or "
                             "corrupt, or holds other Python objects)") from None


def read_weights(path: str | Path) -> tuple[dict[str, Tensor], bool]:
    """The state dict in ``path`` and whether it came from a mate checkpoint.

    A dict that wraps the state dict (``{"state_dict": ...}`` as timm's training script writes,
    ``{"model": ...}`` as DeiT's) is unwrapped, and a ``module.`` prefix (DistributedDataParallel)
    is dropped. Files are read with ``weights_only=True``: they can hold tensors, never code.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"model.pretrained={path}: no such file (pass a state dict or a mate checkpoint, "
                          "or true for the library's own weights)")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = load_safely(path)
    except UnloadableFile as exc:
        raise ConfigError(f"model.pretrained={path} cannot be read as weights: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a corrupt .safetensors file, safetensors missing, ...
        raise ConfigError(f"model.pretrained={path} cannot be read as weights ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    is_mate = isinstance(state, dict) and "model" in state and "config" in state
    if isinstance(state, dict):
        for key in ("model", "state_dict"):
            if isinstance(state.get(key), dict):
                state = state[key]
                break
    if not isinstance(state, dict) or not state or not all(isinstance(v, Tensor) for v in state.values()):
        raise ConfigError(f"model.pretrained={path} is not a state dict (a mapping of parameter names to tensors)")
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return dict(state), is_mate


def load_weights(module: nn.Module, state: StateDict, source: str, what: str,
                 ignore: Callable[[str], bool] = lambda key: False, hint: str = "") -> None:
    """Copy ``state`` into ``module``; one ConfigError lists everything that does not fit.

    ignore: keys (of the file and of the module) that are neither loaded nor missed, such as
        the classifier. A missing BatchNorm ``num_batches_tracked`` (old checkpoints) is fine.
    source, what, hint: the error's wording: ``model.pretrained=<source> does not fit <what>``.
    """
    own = {k: v for k, v in module.state_dict().items() if not ignore(k)}
    given = {k: v for k, v in state.items() if not ignore(k)}
    missing = [k for k in own if k not in given and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in given if k not in own]
    mismatched = [f"{k} (file {_shape(given[k])}, model {_shape(own[k])})"
                  for k in own if k in given and given[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        lines = [f"model.pretrained={source} does not fit {what}:"]
        for label, keys in (("missing from the file", missing), ("unexpected in the file", unexpected),
                            ("of another shape", mismatched)):
            if keys:
                more = f" and {len(keys) - 5} more" if len(keys) > 5 else ""
                lines.append(f"  {len(keys)} {'key' if len(keys) == 1 else 'keys'} {label}: "
                             f"{', '.join(keys[:5])}{more}")
        if hint:
            lines.append(hint)
        raise ConfigError("\n".join(lines))
    module.load_state_dict({k: v for k, v in given.items() if k in own}, strict=False)


def load_checkpoint_backbone(net: nn.Module, state: StateDict, source: str, what: str) -> None:
    """The stem and stages of a mate checkpoint's model into ``net``; its exits are not loaded."""
    load_weights(net, state, source, f"the backbone of {what}",
                 ignore=lambda key: not key.startswith(("stem.", "stages.")),
                 hint="A mate checkpoint's backbone fits a model of the same architecture, options and exit levels.")


def under(prefixes: Optional[str | Sequence[str]]) -> Callable[[str], bool]:
    """A predicate: the key belongs to one of the modules named by ``prefixes`` (e.g. ``"fc"``)."""
    if not prefixes:
        return lambda key: False
    names = (prefixes,) if isinstance(prefixes, str) else tuple(prefixes)
    return lambda key: any(key == n or key.startswith(n + ".") for n in names)


def download_failed(library: str, what: str, exc: BaseException) -> ConfigError:
    """The error of ``model.pretrained=true`` when the library cannot get its weights."""
    reason = str(exc).splitlines()[0] if str(exc) else ""
    return ConfigError(
        f"model.pretrained=true: {library} could not get its pretrained weights for {what} "
        f"({type(exc).__name__}: {reason}). Without internet access, get the weights file on a machine that "
        "has it and pass the file instead: model.pretrained=/path/to/weights.pth (a state dict saved with "
        "torch.save, a .safetensors file, or a mate checkpoint)"
    )


def _shape(t: Tensor) -> str:
    return "x".join(map(str, t.shape)) or "scalar"
