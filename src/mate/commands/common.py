"""What several handlers share: the rank that prints, CSV output, and the early-exit predictor
of a trained run."""
from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..engine import TrainedModel
from ..errors import MateError
from ..evaluation import collect_exit_logits
from ..inference import EarlyExitPredictor
from ..models import MultiExitNetwork


def is_main_process() -> bool:
    """Under torchrun only rank 0 prints; every process still reports its own errors."""
    return os.environ.get("RANK", "0") == "0"


def write_csv(path: Optional[str | Path], header: Sequence[str], rows: Sequence[Sequence]) -> None:
    """One row per sample under ``header``; nothing when ``path`` is None."""
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


def checkpoint_line(given: str | Path, trained: TrainedModel) -> str:
    """Which file a command read for ``given`` (a file, or a run folder) and why."""
    if not Path(given).is_dir():
        return f"checkpoint: {trained.path} (epoch {trained.epoch})"
    why = ("selected on validation; a run folder means its best.pt" if trained.path.name == "best.pt"
           else "the run folder has no best.pt yet")
    return f"checkpoint: {trained.path} (epoch {trained.epoch}, {why})"


def build_predictor(trained: TrainedModel, model: MultiExitNetwork, budget_mflops: Optional[float],
                    thresholds: Optional[Sequence[float]], score: str) -> EarlyExitPredictor:
    """An EarlyExitPredictor of ``model`` for ``budget_mflops`` MFLOPs per sample (thresholds
    calibrated on the run's validation split, on ``model`` itself) or for the given ``thresholds``."""
    if budget_mflops is not None:
        if trained.data.val is None:
            raise MateError("--budget calibrates thresholds on the validation split, and this run has none "
                            "(data.val_size=0); use --threshold, or the override data.val_size=5000")
        with torch.inference_mode():
            calibration = collect_exit_logits(model, trained.data.val)
        return EarlyExitPredictor(model, budget_flops=budget_mflops * 1e6, calibration=calibration, score=score)
    return EarlyExitPredictor(model, thresholds=thresholds, score=score)
