"""Anytime prediction: each exit's top-1 accuracy against its cumulative cost F_k, and the
exits' ensemble (mean of logits), which needs every exit and so costs F_K."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import List, Sequence

from .logits import ExitLogits


@dataclass
class AnytimePoint:
    name: str  # "exit 1" .. "exit K", "ensemble"
    flops: float
    accuracy: float


def anytime_points(logits: ExitLogits, flops: Sequence[float]) -> List[AnytimePoint]:
    if len(flops) != logits.num_exits:
        raise ValueError(f"{len(flops)} costs for {logits.num_exits} exits")
    points = [AnytimePoint(f"exit {k}", float(f), a)
              for k, (f, a) in enumerate(zip(flops, logits.exit_accuracy()), start=1)]
    points.append(AnytimePoint("ensemble", float(flops[-1]), logits.ensemble_accuracy()))
    return points


def format_anytime_table(points: List[AnytimePoint]) -> str:
    lines = ["| exit | MFLOPs | MMACs | test acc (%) |", "|---|---:|---:|---:|"]
    lines += [f"| {p.name} | {p.flops / 1e6:.2f} | {p.flops / 2e6:.2f} | {p.accuracy:.2f} |" for p in points]
    return "\n".join(lines)


def write_anytime_csv(rows: dict[str, List[AnytimePoint]], path: str | Path) -> Path:
    path = Path(path)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "exit", "mflops", "test_acc"])
        for label, points in rows.items():
            for p in points:
                w.writerow([label, p.name, f"{p.flops / 1e6:.4f}", f"{p.accuracy:.2f}"])
    return path
