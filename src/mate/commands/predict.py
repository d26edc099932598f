"""``mate predict``: the early-exit predictor on a dataset split or a folder of images; on a
checkpoint with PyTorch, on an export folder with ONNX Runtime. Both runtimes share the loops over
a split or the image files, the CSV and the summary."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal, Optional, Sequence

import torch
from torch import Tensor

from ..config import Config, apply_overrides
from ..data import DataBundle, build_data
from ..engine import load_trained
from ..errors import ConfigError, MateError
from ..inference import EarlyExitResult, OnnxEarlyExitPredictor, prepare_for_inference
from ..inference.images import class_folder_labels, list_images, load_images
from .common import build_predictor, checkpoint_line, write_csv


@dataclass
class Runner:
    """What the loops need from either runtime."""

    predict: Callable[[Tensor], EarlyExitResult]  # normalised N x C x H x W images -> results on the CPU
    data: Callable[[], DataBundle]  # the dataset's splits, built when a split is asked for
    in_channels: int
    side: int
    mean: Sequence[float]
    std: Sequence[float]
    class_names: list[str]
    num_exits: int
    full_flops: float


def predict_command(checkpoint: str, budget_mflops: Optional[float] = None,
                    thresholds: Optional[Sequence[float]] = None, score: Optional[str] = None,
                    split: Literal["test", "val"] = "test", images: Optional[str] = None, out: Optional[str] = None,
                    batch_size: int = 256, as_trained: bool = False, overrides: Sequence[str] = ()) -> int:
    """``budget_mflops``: average MFLOPs per sample (thresholds calibrated on the validation split),
    or ``thresholds``: one for every exit but the last, or one per exit. ``images``: a folder to
    predict instead of ``split``. ``out``: a CSV with one row per sample."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {batch_size}")
    if Path(checkpoint).is_dir() and (Path(checkpoint) / "manifest.json").is_file():
        runner = _onnx_runner(checkpoint, budget_mflops, thresholds, score, overrides)
    else:
        runner = _torch_runner(checkpoint, budget_mflops, thresholds, score or "max_prob", as_trained, overrides)
    if images:
        _predict_images(runner, images, batch_size, out)
    else:
        _predict_split(runner, split, batch_size, out)
    return 0


def _torch_runner(checkpoint: str, budget_mflops: Optional[float], thresholds: Optional[Sequence[float]],
                  score: str, as_trained: bool, overrides: Sequence[str]) -> Runner:
    if budget_mflops is None and thresholds is None:
        raise ConfigError("give --budget MFLOPS or --threshold T[,T...]")
    trained = load_trained(checkpoint, overrides)
    print(checkpoint_line(checkpoint, trained))
    # thresholds are calibrated on the network that runs, so the results are the offline simulation's
    model = trained.model if as_trained else prepare_for_inference(trained.model)
    predictor = build_predictor(trained, model, budget_mflops, thresholds, score)
    flops = predictor.costs.flops
    shown = " ".join(f"{t:.4g}" for t in predictor.thresholds.tolist()[:-1])
    how = f"budget {budget_mflops} MFLOPs (q = {predictor.q:.2f})" if budget_mflops is not None else "given thresholds"
    print(f"score {score}, thresholds {shown} ({how}); full network {flops[-1] / 1e6:.2f} MFLOPs "
          f"= {flops[-1] / 2e6:.2f} MMACs")
    splits = trained.data.splits
    return Runner(lambda x: EarlyExitResult.cat([predictor(x.to(trained.device))]), lambda: trained.data,
                  model.in_channels, model.input_size, splits.mean, splits.std, trained.class_names(),
                  model.num_exits, float(flops[-1]))


def _onnx_runner(folder: str, budget_mflops: Optional[float], thresholds: Optional[Sequence[float]],
                 score: Optional[str], overrides: Sequence[str]) -> Runner:
    """The exported stage graphs, run by ONNX Runtime, at the operating point stored by `mate export`
    (or given thresholds)."""
    if budget_mflops is not None:
        raise ConfigError("an export folder runs the operating point `mate export --budget` stored in it, or "
                          "--threshold; --budget calibrates thresholds on a checkpoint's validation split")
    others = [o for o in overrides if not o.startswith("data.")]
    if others:
        raise ConfigError(f"an export folder takes data.* overrides only (where its data is), got {' '.join(others)}")
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
          + f"; full network {predictor.flops[-1] / 1e6:.2f} MFLOPs = {predictor.flops[-1] / 2e6:.2f} MMACs")

    def run(x: Tensor) -> EarlyExitResult:
        r = predictor(x.numpy())
        return EarlyExitResult(torch.from_numpy(r.predictions), torch.from_numpy(r.exits), torch.from_numpy(r.flops))

    def data() -> DataBundle:
        if not manifest.get("data"):
            raise ConfigError(f"{folder}/manifest.json does not name its dataset (exported by an earlier version); "
                              "give --images DIR, or export the checkpoint again")
        config = Config.from_dict(apply_overrides({"data": manifest["data"]}, list(overrides)))
        bundle = build_data(config.data, "cpu")
        shape = [bundle.splits.in_channels, bundle.splits.input_size, bundle.splits.input_size]
        if shape != list(manifest["input_shape"]):
            raise ConfigError(f"the dataset gives {' x '.join(map(str, shape))} images, the export takes "
                              f"{' x '.join(map(str, manifest['input_shape']))}")
        return bundle

    return Runner(run, data, c, h, manifest["mean"], manifest["std"], names, predictor.num_exits,
                  float(predictor.flops[-1]))


def _predict_split(runner: Runner, split: str, batch_size: int, out: Optional[str]) -> None:
    data = runner.data()
    loader = data.test if split == "test" else data.val
    if loader is None:
        raise MateError("this run has no validation split (data.val_size=0); use --split test")
    results, labels = [], []
    for x, y in loader:  # the split's batches, cut to --batch-size
        for j in range(0, len(y), batch_size):
            results.append(runner.predict(x[j:j + batch_size]))
        labels.append(y.cpu())
    result, labels = EarlyExitResult.cat(results), torch.cat(labels)
    names = runner.class_names
    rows = [[i, int(y), int(c), names[int(c)], int(e) + 1, f"{f / 1e6:.4f}"]
            for i, (y, c, e, f) in enumerate(zip(labels, result.predictions, result.exits, result.flops))]
    print(summary_line(split, result, labels, runner))
    write_csv(out, ["index", "label", "prediction", "predicted_class", "exit", "mflops"], rows)


def _predict_images(runner: Runner, folder: str, batch_size: int, out: Optional[str]) -> None:
    if runner.mean is None:  # data.name=python: the factory's transforms prepare its images
        raise ConfigError("this model was trained on data.name=python, whose own transforms prepare its images; "
                          "predict a split (--split), or run mate.EarlyExitPredictor on images you transform")
    paths = list_images(folder)
    labels = class_folder_labels(folder, paths, runner.class_names)
    results = []
    for i in range(0, len(paths), batch_size):
        x = load_images(paths[i:i + batch_size], runner.in_channels, runner.side, runner.mean, runner.std)
        results.append(runner.predict(x))
    result = EarlyExitResult.cat(results)
    names = runner.class_names
    rows = []
    for j, (path, c, e, f) in enumerate(zip(paths, result.predictions, result.exits, result.flops)):
        c, e = int(c), int(e) + 1
        print(f"{path}: {names[c]} (class {c}), exit {e}, {f / 1e6:.4f} MFLOPs")
        rows.append([str(path), *([labels[j]] if labels is not None else []), c, names[c], e, f"{f / 1e6:.4f}"])
    print(summary_line(folder, result, torch.tensor(labels) if labels is not None else None, runner,
                       " (labels: the class folders)"))
    header = ["image", *(["label"] if labels is not None else []), "prediction", "predicted_class", "exit", "mflops"]
    write_csv(out, header, rows)


def summary_line(what: str, result: EarlyExitResult, labels: Optional[Tensor], runner: Runner,
                 labels_note: str = "") -> str:
    """How many images, the accuracy (when labelled), the average cost and the exit shares."""
    n = len(result.exits)
    parts = [f"{what}: {n} images"]
    if labels is not None:
        parts.append(f"accuracy {float((result.predictions == labels).double().mean() * 100):.2f}%{labels_note}")
    mean = result.mean_flops
    parts.append(f"average {mean / 1e6:.2f} MFLOPs = {mean / 2e6:.2f} MMACs ({mean / runner.full_flops:.3f} of the "
                 "full network)")
    shares = torch.bincount(result.exits, minlength=runner.num_exits).double() / n
    parts.append("exit shares " + " / ".join(f"{s:.3f}" for s in shares.tolist()))
    return ", ".join(parts)
