"""Exit scores: how confident exit k is about a sample, from its logits alone.

The same ``score_step`` is used by the offline simulation (``budget.exit_scores``, on every
exit's logits of a whole split) and by the early-exit predictor (on the rows still in the
batch), so both compare identical numbers against the thresholds.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ..errors import ConfigError

SCORES = ("max_prob", "neg_entropy", "patience")

# Patience carries, per sample, the previous exit's argmax and how many exits in a row agreed.
ScoreState = Optional[Tuple[Tensor, Tensor]]


def check_score(score: str) -> str:
    if score not in SCORES:
        raise ConfigError(f"unknown exit score {score!r}; choose one of {', '.join(SCORES)}")
    return score


def score_step(logits: Tensor, score: str, state: ScoreState = None) -> tuple[Tensor, ScoreState]:
    """Scores (higher = more confident) of one exit's B x C logits, and the state for the next exit.

    max_prob: the largest softmax probability. neg_entropy: sum_c p_c log p_c (0 for a one-hot
    prediction). patience: the number of consecutive exits, ending at this one, whose argmax
    equals this exit's argmax (1 at the first exit), as in PABEE, plus half the max probability.
    The integer part orders samples by patience; the fraction (in (0, 0.5]) only orders samples
    of equal patience. Without it every sample ties at exit 1 (patience 1), and the calibration's
    tie rule would send the whole split out there.
    """
    logits = logits.float()
    if score == "max_prob":
        return logits.softmax(-1).amax(-1), None
    if score == "neg_entropy":
        logp = logits.log_softmax(-1)
        return (logp.exp() * logp).sum(-1), None
    if score == "patience":
        pred = logits.argmax(-1)
        if state is None:
            count = torch.ones_like(pred)
        else:
            prev_pred, prev_count = state
            count = torch.where(pred == prev_pred, prev_count + 1, torch.ones_like(prev_count))
        return count.float() + 0.5 * logits.softmax(-1).amax(-1), (pred, count)
    raise ConfigError(f"unknown exit score {score!r}; choose one of {', '.join(SCORES)}")


def select_state(state: ScoreState, rows: Tensor) -> ScoreState:
    """The score state of the rows ``rows`` (after the batch has been compacted)."""
    if state is None:
        return None
    return state[0].index_select(0, rows), state[1].index_select(0, rows)


def exit_scores(logits: Tensor, score: str) -> Tensor:
    """K x N scores from K x N x C logits (every exit of a whole split)."""
    check_score(score)
    state: ScoreState = None
    out = []
    for z in logits:
        s, state = score_step(z, score, state)
        out.append(s)
    return torch.stack(out)
