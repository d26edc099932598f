"""Budgeted batch classification, MSDNet's protocol, vectorised over samples.

For each q = p/20 (p = 1..39) the target exit shares are geometric, pi_k = q^k / sum_j q^j.
Thresholds are calibrated on the validation split: going through exits 1..K-1 with the set R
of samples not yet exited, n_k = floor(N pi_k) and T_k is the n_k-th largest score over R
(+inf when n_k = 0 or |R| < n_k); samples of R with score >= T_k leave R; T_K = -inf. They are
then applied to the test split: sample i exits at the first k with c_k(i) >= T_k.

Tie rule: a score equal to a threshold passes it (>=), at calibration and at test. Every
sample tied with the n_k-th largest score therefore exits at k, so with tied scores (patience
is an integer) the realised share can exceed pi_k.
"""
from __future__ import annotations

import csv
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Sequence

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError, MateError, MateWarning
from .logits import ExitLogits
from .scores import Array, exit_scores, ops_for

QS = [p / 20 for p in range(1, 40)]
SUMMARY_QS = (0.05, 0.25, 0.5, 0.75, 1.0, 1.5, 1.95)  # the rows of a printed summary (a CSV holds all 39)


def geometric_shares(q: float, num_exits: int) -> List[float]:
    weights = [q**k for k in range(1, num_exits + 1)]
    total = sum(weights)
    return [w / total for w in weights]


def calibrate_thresholds(scores: Tensor, shares: Sequence[float]) -> Tensor:
    """K thresholds (in the scores' dtype) from K x N validation scores and K target shares."""
    num_exits, n = scores.shape
    thresholds = torch.full((num_exits,), math.inf, dtype=scores.dtype)
    thresholds[-1] = -math.inf
    remaining = torch.ones(n, dtype=torch.bool)
    for k in range(num_exits - 1):
        n_k = math.floor(n * shares[k])
        pool = scores[k][remaining]
        if n_k == 0 or pool.numel() < n_k:
            continue
        thresholds[k] = pool.topk(n_k).values[-1]
        remaining &= scores[k] < thresholds[k]
    return thresholds


def exit_thresholds(thresholds: float | Sequence[float] | Tensor | np.ndarray, num_exits: int) -> np.ndarray:
    """The K float32 thresholds of an early exit from one value for every exit but the last, K-1
    values, or K values (the last is ignored): T_K = -inf, the last exit takes every sample left."""
    if isinstance(thresholds, Tensor):
        thresholds = thresholds.detach().float().cpu().numpy()
    values = np.asarray(thresholds, dtype=np.float32).reshape(-1)
    k = num_exits
    if values.size == 1:
        values = np.repeat(values, k - 1)
    if values.size == k:
        values = values[:-1]
    if values.size != k - 1:
        raise ConfigError(f"give 1 or {k - 1} thresholds for a model with {k} exits, got {values.size}")
    return np.concatenate([values, np.array([-math.inf], dtype=np.float32)])


def exit_decisions(scores: Array, thresholds: Array) -> Array:
    """Exit index (0-based) of every sample: the first k with score_k >= T_k; the last exit takes
    the rest. ``scores`` (K x N) and ``thresholds`` (K): torch tensors or NumPy arrays."""
    ops = ops_for(scores)
    passes = scores >= ops.as_dtype_of(thresholds, scores)[:, None]
    passes[-1] = True
    return ops.argmax(ops.uint8(passes), 0)  # argmax returns the first maximum


@dataclass
class BudgetPoint:
    q: float
    thresholds: List[float]
    shares: List[float]  # realised exit shares on test
    avg_flops: float  # expected cost on test: sum_k share_k F_k
    accuracy: float  # test top-1 (%)
    val_avg_flops: float
    val_accuracy: float


@dataclass
class Simulation:
    """Per-sample outcome of one set of thresholds on one split."""

    exits: Tensor  # N, 0-based
    predictions: Tensor  # N
    flops: Tensor  # N, float64: F of each sample's exit
    correct: Tensor = field(repr=False)

    @property
    def accuracy(self) -> float:
        return float(self.correct.float().mean() * 100)

    @property
    def avg_flops(self) -> float:
        return float(self.flops.mean())

    def shares(self, num_exits: int) -> List[float]:
        return (torch.bincount(self.exits, minlength=num_exits).double() / self.exits.numel()).tolist()


def simulate(logits: ExitLogits, scores: Tensor, thresholds: Tensor, flops: Sequence[float]) -> Simulation:
    """The offline early exit: every exit's logits are known; each sample keeps the one at its exit."""
    exits = exit_decisions(scores, thresholds)
    chosen = logits.logits.gather(0, exits[None, :, None].expand(1, -1, logits.logits.shape[-1]))[0]
    predictions = chosen.argmax(-1)
    cost = torch.tensor(list(flops), dtype=torch.float64)[exits]
    return Simulation(exits, predictions, cost, predictions == logits.labels)


def budget_curve(val: ExitLogits, test: ExitLogits, flops: Sequence[float], score: str = "max_prob",
                 qs: Sequence[float] = QS) -> List[BudgetPoint]:
    """One (average FLOPs, test accuracy) point per q, thresholds calibrated on ``val``."""
    if val.num_exits != test.num_exits or len(flops) != test.num_exits:
        raise MateError("validation logits, test logits and FLOPs must cover the same exits")
    val_scores, test_scores = exit_scores(val.logits, score), exit_scores(test.logits, score)
    points = []
    for q in qs:
        thresholds = calibrate_thresholds(val_scores, geometric_shares(q, test.num_exits))
        on_val = simulate(val, val_scores, thresholds, flops)
        on_test = simulate(test, test_scores, thresholds, flops)
        points.append(BudgetPoint(q, thresholds.tolist(), on_test.shares(test.num_exits), on_test.avg_flops,
                                  on_test.accuracy, on_val.avg_flops, on_val.accuracy))
    return points


def thresholds_for_budget(val: ExitLogits, flops: Sequence[float], budget_flops: float, score: str = "max_prob",
                          qs: Sequence[float] = QS) -> tuple[float, Tensor]:
    """The q and thresholds whose validation accuracy is best among those within ``budget_flops``
    average FLOPs per sample on the validation split; ties go to the cheaper point.

    When every point within the budget has the same validation accuracy (a small validation split
    tells them apart in steps of 100 / N points), the tie rule alone picks the cheapest, so
    different budgets give the same point: a MateWarning says so.
    """
    val_scores = exit_scores(val.logits, score)
    fitting = []
    for q in qs:
        thresholds = calibrate_thresholds(val_scores, geometric_shares(q, val.num_exits))
        sim = simulate(val, val_scores, thresholds, flops)
        if sim.avg_flops <= budget_flops:
            fitting.append(((sim.accuracy, -sim.avg_flops), q, thresholds))
    if not fitting:
        cheapest = min(flops)
        raise MateError(f"no threshold setting fits a budget of {budget_flops / 1e6:.3f} MFLOPs per sample; "
                        f"the cheapest exit alone costs {cheapest / 1e6:.3f} MFLOPs. Raise --budget.")
    best = max(fitting, key=lambda point: point[0])
    costs = {point[0][1] for point in fitting}
    if len(costs) > 1 and all(point[0][0] == best[0][0] for point in fitting):
        n = len(val.labels)
        warnings.warn(MateWarning(
            f"the {n} validation images give every operating point within {budget_flops / 1e6:.4g} MFLOPs the same "
            f"accuracy ({best[0][0]:.2f}%), so the cheapest ({-best[0][1] / 1e6:.4g} MFLOPs) is taken; a larger "
            "validation split (data.val_size) tells them apart"), stacklevel=2)
    return best[1], best[2]


def format_budget_table(points: Sequence[BudgetPoint], qs: Sequence[float] = SUMMARY_QS) -> str:
    """A Markdown table of the points at ``qs``: average cost (MFLOPs and MMACs), test accuracy and exit shares."""
    lines = ["| q | avg MFLOPs | avg MMACs | test acc (%) | exit shares |", "|---:|---:|---:|---:|---|"]
    for p in points:
        if any(abs(p.q - q) < 1e-9 for q in qs):
            shares = " / ".join(f"{s:.2f}" for s in p.shares)
            lines.append(f"| {p.q:.2f} | {p.avg_flops / 1e6:.2f} | {p.avg_flops / 2e6:.2f} | {p.accuracy:.2f} "
                         f"| {shares} |")
    return "\n".join(lines)


def write_budget_csv(curves: dict[tuple[str, str], List[BudgetPoint]], path: str | Path) -> Path:
    """One row per (checkpoint label, score, q)."""
    path = Path(path)
    num_exits = len(next(iter(curves.values()))[0].shares)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["label", "score", "q", "avg_mflops", "test_acc", "val_avg_mflops", "val_acc"]
                   + [f"share_{k}" for k in range(1, num_exits + 1)]
                   + [f"threshold_{k}" for k in range(1, num_exits)])
        for (label, score), points in curves.items():
            for p in points:
                w.writerow([label, score, f"{p.q:.2f}", f"{p.avg_flops / 1e6:.4f}", f"{p.accuracy:.2f}",
                            f"{p.val_avg_flops / 1e6:.4f}", f"{p.val_accuracy:.2f}"]
                           + [f"{s:.4f}" for s in p.shares] + [f"{t:.6g}" for t in p.thresholds[:-1]])
    return path
