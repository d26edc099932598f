"""One training step's forward: the model's exits and the objective's loss, as one module."""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.profiler import record_function

# Names of the phases of a training epoch, as ranges that torch.profiler records (the trainer and
# this step open them; benchmarks/engine_overhead.py sums them). Outside a profiler they cost a
# few microseconds a step.
PHASES = {name: f"mate.{name}" for name in
          ("data", "forward", "loss", "backward", "optimizer", "metrics", "validation", "logging", "checkpoint")}


class TrainStep(nn.Module):
    """Model and objective as one module, so that one DDP wrapper averages the gradients of
    both (MATE's weight network included) and broadcasts both modules' buffers, and one
    ``torch.compile`` covers both. Single-process training runs the same module unwrapped."""

    def __init__(self, model: nn.Module, objective: nn.Module):
        super().__init__()
        self.model = model
        self.objective = objective

    def forward(self, x: Tensor, y: Tensor, epoch: float):
        with record_function(PHASES["forward"]):
            outputs = self.model(x)  # under the trainer's autocast, if any
        # The objective (MATE's weight network, softmaxes, KLs, CEs) always runs in float32.
        with record_function(PHASES["loss"]), torch.autocast(x.device.type, enabled=False):
            loss, logs = self.objective(outputs.float(), y, epoch)
        with record_function(PHASES["metrics"]), torch.no_grad():
            # each exit's accuracy on the training batch (augmented, in train mode)
            logs = {**logs, "exit_acc": torch.stack([(z.argmax(-1) == y).float().mean()
                                                     for z in outputs.exit_logits]) * 100}
        return loss, logs
