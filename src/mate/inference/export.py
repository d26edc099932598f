"""ONNX export of a multi-exit network.

``export_onnx(model, folder)`` writes

- ``multi_exit.onnx``: image -> every exit's logits (``logits_1`` .. ``logits_K``), one graph;
- ``stage_1.onnx`` .. ``stage_K.onnx``: the pieces an early-exit runtime chains, stage k taking
  the previous stage's feature map (the image for stage 1, which includes the stem) and giving
  ``features`` (the input of stage k+1; absent from the last stage) and ``logits``;
- ``manifest.json``: shapes, per-exit cumulative FLOPs and parameters, the graphs' file names
  and, when given, the input normalisation, the class names, the thresholds and score of an
  early-exit operating point (what ``OnnxEarlyExitPredictor`` runs) and the run's data section
  (so that ``mate predict EXPORT_DIR --split test`` can measure the export on its dataset).

The manifest is strict JSON: an infinite threshold (no sample exits there) is written as the
string "inf" (``manifest_thresholds`` reads both that and the bare ``Infinity`` that earlier
versions wrote).

The batch axis is dynamic in every graph, so a runtime can compact the batch between stages.
"""
from __future__ import annotations

import inspect
import json
import math
import warnings
from pathlib import Path
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from ..errors import MateError
from ..evaluation.flops import exit_costs
from ..models import MultiExitNetwork

OPSET = 17


class AllExits(nn.Module):
    def __init__(self, model: MultiExitNetwork):
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        return tuple(self.model(x).exit_logits)


class Stage(nn.Module):
    """Stage k of the early-exit chain: (stem +) block k and exit k."""

    def __init__(self, model: MultiExitNetwork, k: int):
        super().__init__()
        self.stem = model.stem if k == 0 else None
        self.block = model.stages[k]
        self.exit = model.exits[k]
        self.is_last = k == model.num_exits - 1

    def forward(self, x: Tensor):
        if self.stem is not None:
            x = self.stem(x)
        h = self.block(x)
        _, logits = self.exit(h)
        return logits if self.is_last else (h, logits)


def _export(module: nn.Module, example: Tensor, path: Path, input_name: str, output_names: list[str]) -> None:
    axes = {name: {0: "batch"} for name in [input_name, *output_names]}
    # The TorchScript-based exporter: the torch.export-based one needs the onnxscript package,
    # which this project does not depend on, and these graphs have no control flow. PyTorch before
    # 2.5 has no ``dynamo`` argument (and only this exporter in torch.onnx.export).
    legacy = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, (example,), str(path), input_names=[input_name], output_names=output_names,
                          dynamic_axes=axes, opset_version=OPSET, **legacy)


@torch.no_grad()
def export_onnx(model: MultiExitNetwork, folder: str | Path, thresholds: Optional[Sequence[float]] = None,
                score: Optional[str] = None, mean: Optional[Sequence[float]] = None,
                std: Optional[Sequence[float]] = None, class_names: Optional[Sequence[str]] = None,
                data: Optional[dict] = None) -> dict:
    """Write the full graph, the stage graphs and the manifest into ``folder``; return the manifest.

    ``data``: the run's config ``data`` section (``config.to_dict()["data"]``), stored so that the
    export can be measured on its dataset's splits."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MateError(f"cannot create the export folder {folder}: {exc.strerror}") from None
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    example = torch.zeros(2, model.in_channels, model.input_size, model.input_size, device=p.device)
    k_exits = model.num_exits
    # Wrappers in eval mode: the exporter restores each wrapper's own mode afterwards, recursively,
    # and a wrapper left in training mode would switch the model's BatchNorm back to training.
    _export(AllExits(model).eval(), example, folder / "multi_exit.onnx", "image",
            [f"logits_{k}" for k in range(1, k_exits + 1)])
    stage_files = []
    x = example
    for k in range(k_exits):
        stage = Stage(model, k).eval()
        name = f"stage_{k + 1}.onnx"
        outputs = ["logits"] if stage.is_last else ["features", "logits"]
        _export(stage, x, folder / name, "image" if k == 0 else "features_in", outputs)
        stage_files.append(name)
        if not stage.is_last:
            x = stage(x)[0]
    costs = exit_costs(model)
    model.train(was_training)
    manifest = {
        "num_exits": k_exits, "num_classes": model.num_classes,
        "input_shape": [model.in_channels, model.input_size, model.input_size],
        "mean": list(mean) if mean is not None else None, "std": list(std) if std is not None else None,
        "multi_exit": "multi_exit.onnx", "stages": stage_files,
        "flops": costs.flops, "params": costs.params, "opset": OPSET,
        "score": score,
        "thresholds": [_json_number(t) for t in thresholds] if thresholds is not None else None,
        "class_names": list(map(str, class_names)) if class_names is not None else None,
        "data": dict(data) if data is not None else None,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, allow_nan=False))
    return manifest


def _json_number(value: float) -> float | str:
    """A threshold as strict JSON: a number, or "inf" / "-inf" (JSON has no infinity)."""
    value = float(value)
    if math.isnan(value):
        raise MateError("a threshold to export is NaN")
    return value if math.isfinite(value) else ("inf" if value > 0 else "-inf")


def manifest_thresholds(values: Sequence[float | str]) -> list[float]:
    """The thresholds of a manifest as floats: numbers, "inf" / "-inf" strings, or the bare
    Infinity that earlier versions wrote (which Python's json reads as a float)."""
    try:
        return [float(v) for v in values]
    except (TypeError, ValueError):
        raise MateError(f"the manifest's thresholds {values!r} are not numbers") from None
