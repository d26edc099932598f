"""Exit scores: how confident exit k is about a sample, from its logits alone.

Each score is written once, on a few array operations (``Ops``) that exist for PyTorch tensors
and for NumPy arrays. ``score_step`` picks the operations by the type of the logits, so the
offline simulation (``exit_scores`` on every exit's logits of a whole split), the PyTorch
early-exit predictor (on the rows still in the batch) and the ONNX Runtime predictor (NumPy)
compute the same formulas; within one array library they compare identical numbers against
the thresholds.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from ..errors import ConfigError

Array = Any  # a torch.Tensor or a np.ndarray
# Patience carries, per sample, the previous exit's argmax and how many exits in a row agreed.
ScoreState = Optional[Tuple[Array, Array]]


class TorchOps:
    """The operations the scores use, on PyTorch tensors (last axis: the classes)."""

    @staticmethod
    def float32(x: Tensor) -> Tensor:
        return x.float()

    @staticmethod
    def softmax(x: Tensor) -> Tensor:
        return x.softmax(-1)

    @staticmethod
    def log_softmax(x: Tensor) -> Tensor:
        return x.log_softmax(-1)

    exp = staticmethod(torch.exp)
    ones_like = staticmethod(torch.ones_like)
    where = staticmethod(torch.where)
    stack = staticmethod(torch.stack)

    @staticmethod
    def amax(x: Tensor) -> Tensor:
        return x.amax(-1)

    @staticmethod
    def sum(x: Tensor) -> Tensor:
        return x.sum(-1)

    @staticmethod
    def argmax(x: Tensor, axis: int = -1) -> Tensor:
        return x.argmax(axis)

    @staticmethod
    def take_rows(x: Tensor, rows: Tensor) -> Tensor:
        return x.index_select(0, rows)

    @staticmethod
    def as_dtype_of(x: Any, like: Tensor) -> Tensor:
        return torch.as_tensor(x).to(like.dtype)

    @staticmethod
    def uint8(x: Tensor) -> Tensor:
        return x.to(torch.uint8)


class NumpyOps:
    """The same operations on NumPy arrays, in float32 (ONNX Runtime's outputs)."""

    @staticmethod
    def float32(x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=np.float32)

    @staticmethod
    def softmax(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    @staticmethod
    def log_softmax(x: np.ndarray) -> np.ndarray:
        z = x - x.max(axis=-1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))

    exp = staticmethod(np.exp)
    ones_like = staticmethod(np.ones_like)
    where = staticmethod(np.where)
    stack = staticmethod(np.stack)

    @staticmethod
    def amax(x: np.ndarray) -> np.ndarray:
        return x.max(axis=-1)

    @staticmethod
    def sum(x: np.ndarray) -> np.ndarray:
        return x.sum(axis=-1)

    @staticmethod
    def argmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
        return x.argmax(axis=axis)

    @staticmethod
    def take_rows(x: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return x[rows]

    @staticmethod
    def as_dtype_of(x: Any, like: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=like.dtype)

    @staticmethod
    def uint8(x: np.ndarray) -> np.ndarray:
        return x.astype(np.uint8)


Ops = type[TorchOps] | type[NumpyOps]


def ops_for(x: Array) -> Ops:
    """The operations of ``x``'s array library."""
    return TorchOps if isinstance(x, Tensor) else NumpyOps


def max_prob(ops: Ops, logits: Array, state: ScoreState) -> tuple[Array, ScoreState]:
    """The largest softmax probability."""
    return ops.amax(ops.softmax(logits)), None


def neg_entropy(ops: Ops, logits: Array, state: ScoreState) -> tuple[Array, ScoreState]:
    """sum_c p_c log p_c (0 for a one-hot prediction)."""
    logp = ops.log_softmax(logits)
    return ops.sum(ops.exp(logp) * logp), None


def patience(ops: Ops, logits: Array, state: ScoreState) -> tuple[Array, ScoreState]:
    """The number of consecutive exits, ending at this one, whose argmax equals this exit's argmax
    (1 at the first exit), as in PABEE, plus half the max probability.

    The integer part orders samples by patience; the fraction (in (0, 0.5]) only orders samples
    of equal patience. Without it every sample ties at exit 1 (patience 1), and the calibration's
    tie rule would send the whole split out there.
    """
    pred = ops.argmax(logits)
    if state is None:
        count = ops.ones_like(pred)
    else:
        prev_pred, prev_count = state
        count = ops.where(pred == prev_pred, prev_count + 1, ops.ones_like(prev_count))
    return ops.float32(count) + 0.5 * ops.amax(ops.softmax(logits)), (pred, count)


ScoreFn = Callable[[Ops, Array, ScoreState], tuple[Array, ScoreState]]
SCORE_FUNCTIONS: dict[str, ScoreFn] = {"max_prob": max_prob, "neg_entropy": neg_entropy, "patience": patience}
SCORES = tuple(SCORE_FUNCTIONS)


def check_score(score: str) -> str:
    if score not in SCORE_FUNCTIONS:
        raise ConfigError(f"unknown exit score {score!r}; choose one of {', '.join(SCORES)}")
    return score


def score_range(score: str, num_classes: int, num_exits: int) -> tuple[float, float]:
    """The values ``score`` takes: max_prob in [0, 1] (at least 1/C in fact; a threshold of 0 lets
    every sample pass), neg_entropy in [-ln C, 0], patience in [0, K - 0.5] (exit k's is at most
    k + 0.5, and the last threshold is exit K-1's)."""
    check_score(score)
    if score == "max_prob":
        return 0.0, 1.0
    if score == "neg_entropy":
        return -math.log(num_classes), 0.0
    return 0.0, num_exits - 0.5


def check_thresholds(thresholds: Any, score: str, num_classes: int, num_exits: int) -> None:
    """Given thresholds must be numbers inside the score's range, or +-inf (never / always exit
    early): a finite threshold outside the range is a mistake (1.5 for max_prob lets no sample
    exit early, as inf would) and NaN lets none pass. One ConfigError naming the first bad value."""
    values = np.asarray(thresholds.detach().cpu() if isinstance(thresholds, Tensor) else thresholds,
                        dtype=np.float64).reshape(-1)
    lo, hi = score_range(score, num_classes, num_exits)
    slack = 1e-6 * max(1.0, abs(lo), abs(hi))  # a calibrated threshold is a float32 score
    for t in values.tolist():
        if math.isnan(t):
            raise ConfigError("threshold nan is not a number")
        if math.isfinite(t) and not lo - slack <= t <= hi + slack:
            raise ConfigError(f"threshold {t:g} is outside the range of {score} scores, [{lo:.4g}, {hi:.4g}]: a "
                              "sample exits at exit k when its score >= T_k (inf: never early, -inf: always)")


def score_step(logits: Array, score: str, state: ScoreState = None) -> tuple[Array, ScoreState]:
    """Scores (higher = more confident) of one exit's B x C logits, in float32, and the state for
    the next exit. ``logits``: a torch tensor or a NumPy array; the result is of the same kind."""
    ops = ops_for(logits)
    return SCORE_FUNCTIONS[check_score(score)](ops, ops.float32(logits), state)


def select_state(state: ScoreState, rows: Array) -> ScoreState:
    """The score state of the rows ``rows`` (after the batch has been compacted)."""
    if state is None:
        return None
    ops = ops_for(rows)
    return ops.take_rows(state[0], rows), ops.take_rows(state[1], rows)


def exit_scores(logits: Array, score: str) -> Array:
    """K x N scores from K x N x C logits (every exit of a whole split)."""
    check_score(score)
    state: ScoreState = None
    out = []
    for z in logits:
        s, state = score_step(z, score, state)
        out.append(s)
    return ops_for(logits).stack(out)
