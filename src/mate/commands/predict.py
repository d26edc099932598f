"""``mate predict``: the early-exit predictor on a dataset split or a folder of images; on a
checkpoint with PyTorch, on an export folder with ONNX Runtime."""
from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional, Sequence

import torch

from ..engine import load_trained
from ..errors import ConfigError, MateError
from ..inference import EarlyExitResult, OnnxEarlyExitPredictor, prepare_for_inference
from ..inference.images import list_images, load_images
from .common import build_predictor, write_csv


def predict_command(checkpoint: str, budget: Optional[float] = None, thresholds: Optional[Sequence[float]] = None,
                    score: Optional[str] = None, split: Literal["test", "val"] = "test", images: Optional[str] = None,
                    out: Optional[str] = None, batch_size: int = 256, as_trained: bool = False,
                    overrides: Sequence[str] = ()) -> int:
    """``budget``: average MFLOPs per sample (thresholds calibrated on the validation split), or
    ``thresholds``: one for every exit but the last, or one per exit. ``images``: a folder to
    predict instead of ``split``. ``out``: a CSV with one row per sample."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if Path(checkpoint).is_dir() and (Path(checkpoint) / "manifest.json").is_file():
        return _predict_onnx(checkpoint, budget, thresholds, score, images, out, batch_size, overrides)
    if budget is None and thresholds is None:
        raise ConfigError("give --budget MFLOPS or --threshold T[,T...]")
    score = score or "max_prob"
    trained = load_trained(checkpoint, overrides)
    data = trained.data
    # thresholds are calibrated on the network that runs, so the results are the offline simulation's
    model = trained.model if as_trained else prepare_for_inference(trained.model)
    predictor = build_predictor(trained, model, budget, thresholds, score)
    flops = predictor.costs.flops
    shown = " ".join(f"{t:.4g}" for t in predictor.thresholds.tolist()[:-1])
    how = f"budget {budget} MFLOPs (q = {predictor.q:.2f})" if budget is not None else "given thresholds"
    print(f"score {score}, thresholds {shown} ({how}); full network {flops[-1] / 1e6:.2f} MFLOPs")

    if images:
        if data.splits.mean is None:  # data.name=python: the factory's transforms prepare its images
            raise ConfigError("this model was trained on data.name=python, whose own transforms prepare its images; "
                              "predict a split (--split), or run mate.EarlyExitPredictor on images you transform")
        paths = list_images(images)
        names = trained.class_names()
        results = []
        for i in range(0, len(paths), batch_size):
            chunk = paths[i:i + batch_size]
            x = load_images(chunk, model.in_channels, model.input_size, data.splits.mean, data.splits.std)
            results.append(predictor(x.to(trained.device)))
        result = EarlyExitResult.cat(results)
        rows = [[str(p), int(c), names[int(c)], int(e) + 1, f"{f / 1e6:.4f}"]
                for p, c, e, f in zip(paths, result.predictions, result.exits, result.flops)]
        header = ["image", "prediction", "class", "exit", "mflops"]
        for r in rows:
            print(f"{r[0]}: {r[2]} (class {r[1]}), exit {r[3]}, {r[4]} MFLOPs")
    else:
        loader = data.test if split == "test" else data.val
        if loader is None:
            raise MateError("this run has no validation split (data.val_size=0); use --split test")
        results, labels = [], []
        for x, y in loader:  # the split's batches, cut to --batch-size
            for j in range(0, len(y), batch_size):
                results.append(predictor(x[j:j + batch_size]))
            labels.append(y)
        result, labels = EarlyExitResult.cat(results), torch.cat(labels).cpu()
        rows = [[i, int(y), int(c), int(e) + 1, f"{f / 1e6:.4f}"]
                for i, (y, c, e, f) in enumerate(zip(labels, result.predictions, result.exits, result.flops))]
        header = ["index", "label", "prediction", "exit", "mflops"]
        acc = float((result.predictions == labels).float().mean() * 100)
        shares = torch.bincount(result.exits, minlength=model.num_exits).double() / len(labels)
        print(f"{split}: {len(labels)} images, accuracy {acc:.2f}%, average {result.mean_flops / 1e6:.2f} MFLOPs "
              f"({result.mean_flops / flops[-1]:.3f} of the full network), exit shares "
              + " / ".join(f"{s:.3f}" for s in shares.tolist()))
    write_csv(out, header, rows)
    return 0


def _predict_onnx(folder: str, budget: Optional[float], thresholds: Optional[Sequence[float]], score: Optional[str],
                  images: Optional[str], out: Optional[str], batch_size: int, overrides: Sequence[str]) -> int:
    """``mate predict EXPORT_DIR --images DIR``: the exported stage graphs, run by ONNX Runtime."""
    if budget is not None:
        raise ConfigError("an export folder has no validation data to calibrate a budget on; use the thresholds "
                          "stored by `mate export --budget`, or --threshold")
    if not images:
        raise ConfigError("an export folder has no dataset; give --images DIR")
    if overrides:
        raise ConfigError(f"overrides ({' '.join(overrides)}) apply to checkpoints, not to an export folder")
    predictor = OnnxEarlyExitPredictor(folder, thresholds=thresholds, score=score)
    manifest = predictor.manifest
    if thresholds is None and score and score != (manifest.get("score") or "max_prob"):
        raise ConfigError(f"the stored thresholds are for the score {manifest.get('score')!r}; "
                          f"give --threshold for --score {score}")
    if manifest.get("mean") is None or manifest.get("std") is None:
        raise ConfigError(f"{folder}/manifest.json has no mean/std to normalise images with; "
                          "export with mate export, or export_onnx(..., mean=..., std=...)")
    c, h, _ = manifest["input_shape"]
    names = manifest.get("class_names") or [str(i) for i in range(manifest["num_classes"])]
    print(f"ONNX Runtime, score {predictor.score}, thresholds "
          + " ".join(f"{t:.4g}" for t in predictor.thresholds[:-1].tolist())
          + f"; full network {predictor.flops[-1] / 1e6:.2f} MFLOPs")
    paths = list_images(images)
    rows = []
    for i in range(0, len(paths), batch_size):
        chunk = paths[i:i + batch_size]
        x = load_images(chunk, c, h, manifest["mean"], manifest["std"]).numpy()
        r = predictor(x)
        for p, cls, e, f in zip(chunk, r.predictions, r.exits, r.flops):
            rows.append([str(p), int(cls), names[int(cls)], int(e) + 1, f"{f / 1e6:.4f}"])
            print(f"{p}: {names[int(cls)]} (class {int(cls)}), exit {int(e) + 1}, {f / 1e6:.4f} MFLOPs")
    write_csv(out, ["image", "prediction", "class", "exit", "mflops"], rows)
    return 0
