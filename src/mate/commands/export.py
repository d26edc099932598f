"""``mate export``: ONNX graphs (all exits; one per stage) and a manifest, optionally with an
early-exit operating point."""
from __future__ import annotations

from typing import Optional, Sequence

from ..engine import load_trained
from ..inference import export_onnx
from .common import build_predictor, checkpoint_line


def export_command(checkpoint: str, out: str, budget_mflops: Optional[float] = None,
                   thresholds: Optional[Sequence[float]] = None, score: str = "max_prob",
                   overrides: Sequence[str] = ()) -> int:
    """``budget_mflops`` (average MFLOPs per sample, calibrated on the validation split) or
    ``thresholds`` store an operating point in the manifest; with neither, the manifest has no
    thresholds. The manifest also names the run's data, for ``mate predict OUT --split test``."""
    trained = load_trained(checkpoint, overrides)
    print(checkpoint_line(checkpoint, trained))
    stored = None
    if budget_mflops is not None or thresholds is not None:
        predictor = build_predictor(trained, trained.model, budget_mflops, thresholds, score)
        stored = predictor.thresholds[:-1].tolist()
    splits = trained.data.splits
    manifest = export_onnx(trained.model, out, thresholds=stored, score=score if stored is not None else None,
                           mean=splits.mean, std=splits.std, class_names=trained.class_names(),
                           data=trained.config.to_dict()["data"])
    files = ", ".join([manifest["multi_exit"], *manifest["stages"], "manifest.json"])
    print(f"wrote {out}: {files}")
    if stored is not None:
        print(f"score {score}, thresholds " + " ".join(f"{t:.4g}" for t in stored)
              + (f" (budget {budget_mflops} MFLOPs, q = {predictor.q:.2f})" if budget_mflops is not None else ""))
    else:
        print("no thresholds stored: give them to OnnxEarlyExitPredictor(..., thresholds=...) or mate predict --threshold")
    return 0
