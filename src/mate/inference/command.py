"""``mate predict``: the early-exit predictor on a dataset split or a folder of images."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from ..engine.trained import load_trained
from ..errors import ConfigError, MateError
from ..evaluation.logits import collect_exit_logits
from .images import list_images, load_images
from .optimize import prepare_for_inference
from .predictor import EarlyExitPredictor, EarlyExitResult


def _thresholds(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"--threshold {text!r}: give numbers separated by commas, e.g. 0.9 or 0.95,0.9,0.8") from None


def _calibrated(trained, model, args):
    """An EarlyExitPredictor for --budget (thresholds calibrated on validation) or --threshold."""
    if args.budget is not None:
        if trained.data.val is None:
            raise MateError("--budget calibrates thresholds on the validation split, and this run has none "
                            "(data.val_size=0); use --threshold, or the override data.val_size=5000")
        with torch.inference_mode():
            calibration = collect_exit_logits(model, trained.data.val)
        return EarlyExitPredictor(model, budget=args.budget * 1e6, calibration=calibration, score=args.score)
    return EarlyExitPredictor(model, thresholds=_thresholds(args.threshold), score=args.score)


def predict_command(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if Path(args.checkpoint).is_dir() and (Path(args.checkpoint) / "manifest.json").is_file():
        return _predict_onnx(args)
    if args.budget is None and args.threshold is None:
        raise ConfigError("give --budget MFLOPS or --threshold T[,T...]")
    args.score = args.score or "max_prob"
    trained = load_trained(args.checkpoint, args.overrides)
    data = trained.data
    # thresholds are calibrated on the network that runs, so the results are the offline simulation's
    model = trained.model if args.as_trained else prepare_for_inference(trained.model)
    predictor = _calibrated(trained, model, args)
    flops = predictor.costs.flops
    thresholds = " ".join(f"{t:.4g}" for t in predictor.thresholds.tolist()[:-1])
    how = f"budget {args.budget} MFLOPs (q = {predictor.q:.2f})" if args.budget is not None else "given thresholds"
    print(f"score {args.score}, thresholds {thresholds} ({how}); full network {flops[-1] / 1e6:.2f} MFLOPs")

    if args.images:
        paths = list_images(args.images)
        names = trained.class_names()
        results = []
        for i in range(0, len(paths), args.batch_size):
            chunk = paths[i:i + args.batch_size]
            x = load_images(chunk, model.in_channels, model.input_size, data.splits.mean, data.splits.std)
            results.append(predictor(x.to(trained.device)))
        result = _cat(results)
        rows = [[str(p), int(c), names[int(c)], int(e) + 1, f"{f / 1e6:.4f}"]
                for p, c, e, f in zip(paths, result.predictions, result.exits, result.flops)]
        header = ["image", "prediction", "class", "exit", "mflops"]
        for r in rows:
            print(f"{r[0]}: {r[2]} (class {r[1]}), exit {r[3]}, {r[4]} MFLOPs")
    else:
        loader = data.test if args.split == "test" else data.val
        if loader is None:
            raise MateError("this run has no validation split (data.val_size=0); use --split test")
        results, labels = [], []
        for x, y in loader:
            results.append(predictor(x))
            labels.append(y)
        result, labels = _cat(results), torch.cat(labels).cpu()
        rows = [[i, int(y), int(c), int(e) + 1, f"{f / 1e6:.4f}"]
                for i, (y, c, e, f) in enumerate(zip(labels, result.predictions, result.exits, result.flops))]
        header = ["index", "label", "prediction", "exit", "mflops"]
        acc = float((result.predictions == labels).float().mean() * 100)
        shares = torch.bincount(result.exits, minlength=model.num_exits).double() / len(labels)
        print(f"{args.split}: {len(labels)} images, accuracy {acc:.2f}%, average {result.mean_flops / 1e6:.2f} MFLOPs "
              f"({result.mean_flops / flops[-1]:.3f} of the full network), exit shares "
              + " / ".join(f"{s:.3f}" for s in shares.tolist()))
    _write_csv(args.out, header, rows)
    return 0


def _write_csv(path, header, rows) -> None:
    if not path:
        return
    try:
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows(rows)
    except OSError as exc:
        raise MateError(f"cannot write {path}: {exc.strerror}") from None
    print(f"wrote {path}")


def _predict_onnx(args: argparse.Namespace) -> int:
    """``mate predict EXPORT_DIR --images DIR``: the exported stage graphs, run by ONNX Runtime."""
    from .onnx_predictor import OnnxEarlyExitPredictor

    if args.budget is not None:
        raise ConfigError("an export folder has no validation data to calibrate a budget on; use the thresholds "
                          "stored by `mate export --budget`, or --threshold")
    if not args.images:
        raise ConfigError("an export folder has no dataset; give --images DIR")
    if args.overrides:
        raise ConfigError(f"overrides ({' '.join(args.overrides)}) apply to checkpoints, not to an export folder")
    thresholds = _thresholds(args.threshold) if args.threshold else None
    predictor = OnnxEarlyExitPredictor(args.checkpoint, thresholds=thresholds, score=args.score)
    manifest = predictor.manifest
    if thresholds is None and args.score and args.score != (manifest.get("score") or "max_prob"):
        raise ConfigError(f"the stored thresholds are for the score {manifest.get('score')!r}; "
                          f"give --threshold for --score {args.score}")
    if manifest.get("mean") is None or manifest.get("std") is None:
        raise ConfigError(f"{args.checkpoint}/manifest.json has no mean/std to normalise images with; "
                          "export with mate export, or export_onnx(..., mean=..., std=...)")
    c, h, _ = manifest["input_shape"]
    names = manifest.get("class_names") or [str(i) for i in range(manifest["num_classes"])]
    print(f"ONNX Runtime, score {predictor.score}, thresholds "
          + " ".join(f"{t:.4g}" for t in predictor.thresholds[:-1].tolist())
          + f"; full network {predictor.flops[-1] / 1e6:.2f} MFLOPs")
    paths = list_images(args.images)
    rows = []
    for i in range(0, len(paths), args.batch_size):
        chunk = paths[i:i + args.batch_size]
        x = load_images(chunk, c, h, manifest["mean"], manifest["std"]).numpy()
        r = predictor(x)
        for p, cls, e, f in zip(chunk, r.predictions, r.exits, r.flops):
            rows.append([str(p), int(cls), names[int(cls)], int(e) + 1, f"{f / 1e6:.4f}"])
            print(f"{p}: {names[int(cls)]} (class {int(cls)}), exit {int(e) + 1}, {f / 1e6:.4f} MFLOPs")
    _write_csv(args.out, ["image", "prediction", "class", "exit", "mflops"], rows)
    return 0


def export_command(args: argparse.Namespace) -> int:
    from .export import export_onnx

    trained = load_trained(args.checkpoint, args.overrides)
    thresholds = score = None
    if args.budget is not None or args.threshold is not None:
        predictor = _calibrated(trained, trained.model, args)
        thresholds, score = predictor.thresholds[:-1].tolist(), args.score
    splits = trained.data.splits
    manifest = export_onnx(trained.model, args.out, thresholds=thresholds, score=score, mean=splits.mean,
                           std=splits.std, class_names=trained.class_names())
    files = ", ".join([manifest["multi_exit"], *manifest["stages"], "manifest.json"])
    print(f"wrote {args.out}: {files}")
    if thresholds is not None:
        print(f"score {score}, thresholds " + " ".join(f"{t:.4g}" for t in thresholds)
              + (f" (budget {args.budget} MFLOPs, q = {predictor.q:.2f})" if args.budget is not None else ""))
    else:
        print("no thresholds stored: give them to OnnxEarlyExitPredictor(..., thresholds=...) or mate predict --threshold")
    return 0


def _cat(results: list[EarlyExitResult]) -> EarlyExitResult:
    return EarlyExitResult(*(torch.cat([getattr(r, f).cpu() for r in results])
                             for f in ("predictions", "exits", "flops")))
