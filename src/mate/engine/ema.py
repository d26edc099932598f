"""An exponential moving average of a model's weights (``optim.ema_decay``).

After every optimizer step each floating-point parameter and buffer of the copy moves towards
the trained model's: ``ema = decay * ema + (1 - decay) * w``. BatchNorm's running statistics are
buffers, so they are averaged too; integer buffers (BatchNorm's batch counter) are copied. The
copy starts equal to the model, never takes gradients, and is what the trainer evaluates, selects
and tests when the average is on; its state is part of every checkpoint, so a resumed run goes
on with the same average.
"""
from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA:
    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        # Pairs of tensors that share storage with the two modules' parameters and buffers
        # (load_state_dict copies in place, so they stay valid after a resume).
        ours, theirs = self.model.state_dict(keep_vars=True), model.state_dict(keep_vars=True)
        floats = [k for k, v in ours.items() if v.is_floating_point()]
        self._float_pairs = ([ours[k].detach() for k in floats], [theirs[k].detach() for k in floats])
        self._other_pairs = [(ours[k].detach(), theirs[k].detach()) for k in ours if k not in floats]

    @torch.no_grad()
    def update(self) -> None:
        """One step of the average towards the trained model's current weights."""
        ema, live = self._float_pairs
        if ema:
            torch._foreach_lerp_(ema, live, 1.0 - self.decay)
        for mine, other in self._other_pairs:
            mine.copy_(other)

    def state_dict(self) -> dict:
        return self.model.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state)
