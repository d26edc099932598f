"""Batched early exit: run a batch stage by stage; after each exit, the samples whose score
passes that exit's threshold leave the batch and only the rest go on.

The batch is compacted with one ``index_select`` per exit, so later stages really compute
fewer rows; once no sample is left the remaining stages are skipped. Per-sample predictions
and exits equal the offline simulation of ``mate.evaluation.budget`` exactly, because

- both use ``score_step`` on the same logits rows, and the same ``>=`` against the same
  float thresholds;
- in eval mode each row's arithmetic does not depend on which other rows share its batch,
  except that CPU convolution and matrix kernels take another path for a batch of one. The
  predictor never runs a batch of one: a lone sample is run as two copies of itself.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import torch
from torch import Tensor

from ..errors import ConfigError
from ..evaluation.budget import exit_thresholds, thresholds_for_budget
from ..evaluation.flops import ExitCosts, exit_costs
from ..evaluation.logits import ExitLogits
from ..evaluation.scores import check_score, check_thresholds, score_step, select_state
from ..models import MultiExitNetwork


@dataclass
class EarlyExitResult:
    predictions: Tensor  # N, class index at each sample's exit
    exits: Tensor  # N, 0-based exit index
    flops: Tensor  # N, float64: F_k of each sample's exit (what was spent on it)

    @property
    def total_flops(self) -> float:
        return float(self.flops.sum())

    @property
    def mean_flops(self) -> float:
        return float(self.flops.mean())

    @classmethod
    def cat(cls, results: Sequence["EarlyExitResult"]) -> "EarlyExitResult":
        """The results of several batches as one, on the CPU, in order."""
        return cls(*(torch.cat([getattr(r, f).cpu() for r in results]) for f in ("predictions", "exits", "flops")))


class EarlyExitPredictor:
    """``EarlyExitPredictor(model, thresholds=...)`` or ``EarlyExitPredictor(model, budget_flops=...,
    calibration=val_logits)``.

    thresholds: one value for every exit but the last, or K-1 values (the last exit always
        takes the rest). A sample exits at the first k with score_k >= T_k. Each must lie in the
        score's range (``score_range``) or be +-inf.
    budget_flops: average FLOPs per sample (FLOPs, as every cost of the Python API; the CLI's
        --budget is in MFLOPs). The thresholds are calibrated on ``calibration`` (the validation
        split's logits, from ``collect_exit_logits``) by MSDNet's protocol: of the 39 geometric
        exit shares, the one with the best validation accuracy within the budget (ties: the cheaper).
    score: "max_prob", "neg_entropy" or "patience".
    """

    def __init__(self, model: MultiExitNetwork, thresholds: Optional[float | Sequence[float] | Tensor] = None,
                 budget_flops: Optional[float] = None, calibration: Optional[ExitLogits] = None,
                 score: str = "max_prob", costs: Optional[ExitCosts] = None):
        self.model = model.eval()
        self.score = check_score(score)
        self.costs = costs or exit_costs(model)
        self.flops = self.costs.as_tensor()
        k = model.num_exits
        self.q: Optional[float] = None
        if (thresholds is None) == (budget_flops is None):
            raise ConfigError("give the early-exit predictor either thresholds or a budget, not both or neither")
        if budget_flops is not None:
            if calibration is None:
                raise ConfigError("a budget needs calibration logits (the validation split's collect_exit_logits)")
            self.q, thresholds = thresholds_for_budget(calibration, self.costs.flops, budget_flops, score)
        else:
            check_thresholds(thresholds, self.score, model.num_classes, k)
        self.thresholds = torch.from_numpy(exit_thresholds(thresholds, k))

    @torch.inference_mode()
    def predict(self, x: Tensor) -> EarlyExitResult:
        model = self.model
        n = x.shape[0]
        device = x.device
        predictions = torch.empty(n, dtype=torch.long, device=device)
        exits = torch.empty(n, dtype=torch.long, device=device)
        rows = torch.arange(n, device=device)  # original index of every row still in the batch
        if n == 1:
            rows = rows.repeat(2)
            x = x.repeat(2, 1, 1, 1)
        thresholds = self.thresholds.tolist()
        last = model.num_exits - 1
        state = None
        h = model.stem(x)
        for k, (block, exit_) in enumerate(zip(model.stages, model.exits)):
            h = block(h)
            _, logits = exit_(h)
            if k == last:
                predictions[rows] = logits.argmax(-1)
                exits[rows] = k
                break
            score, state = score_step(logits, self.score, state)
            passes = score >= thresholds[k]
            leaving = passes.nonzero().squeeze(1)
            if leaving.numel() == 0:
                continue
            predictions[rows[leaving]] = logits.index_select(0, leaving).argmax(-1)
            exits[rows[leaving]] = k
            staying = (~passes).nonzero().squeeze(1)
            if staying.numel() == 0:
                break
            if staying.numel() == 1:
                staying = staying.repeat(2)
            if h.dim() == 4 and not h.is_contiguous() and h.is_contiguous(memory_format=torch.channels_last):
                # an NHWC feature map (an NHWC model's, or NHWC inputs'): select rows of the NHWC
                # storage so that the later convolutions get NHWC again, in one copy
                h = h.permute(0, 2, 3, 1).index_select(0, staying).permute(0, 3, 1, 2)
            else:
                h = h.index_select(0, staying)
            rows = rows.index_select(0, staying)
            state = select_state(state, staying)
        return EarlyExitResult(predictions, exits, self.flops.to(device)[exits])

    __call__ = predict
