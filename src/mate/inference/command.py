"""``mate predict``: the early-exit predictor on a dataset split or a folder of images."""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

import torch

from ..engine.evaluate import collect_exit_logits
from ..errors import ConfigError, MateError
from ..evaluation.trained import load_trained
from .images import list_images, load_images
from .optimize import prepare_for_inference
from .predictor import EarlyExitPredictor, EarlyExitResult


def _thresholds(text: str) -> list[float]:
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"--threshold {text!r}: give numbers separated by commas, e.g. 0.9 or 0.95,0.9,0.8") from None


def predict_command(args: argparse.Namespace) -> int:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    trained = load_trained(args.checkpoint, args.overrides)
    data = trained.data
    # thresholds are calibrated on the network that runs, so the results are the offline simulation's
    model = trained.model if args.as_trained else prepare_for_inference(trained.model)
    if args.budget is not None:
        if data.val is None:
            raise MateError("--budget calibrates thresholds on the validation split, and this run has none "
                            "(data.val_size=0); use --threshold, or the override data.val_size=5000")
        calibration = collect_exit_logits(model, data.val)
        predictor = EarlyExitPredictor(model, budget=args.budget * 1e6, calibration=calibration, score=args.score)
    else:
        predictor = EarlyExitPredictor(model, thresholds=_thresholds(args.threshold), score=args.score)
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
    if args.out:
        try:
            with open(args.out, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(header)
                w.writerows(rows)
        except OSError as exc:
            raise MateError(f"cannot write {args.out}: {exc.strerror}") from None
        print(f"wrote {args.out}")
    return 0


def _cat(results: list[EarlyExitResult]) -> EarlyExitResult:
    return EarlyExitResult(*(torch.cat([getattr(r, f).cpu() for r in results])
                             for f in ("predictions", "exits", "flops")))
