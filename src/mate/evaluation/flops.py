"""Cost of every exit: FLOPs and parameters up to and including exit k.

FLOPs are counted by PyTorch's own ``torch.utils.flop_counter.FlopCounterMode`` on one input
of the dataset's shape; that counter reports FLOPs = 2 x multiply-accumulates of convolutions
and matrix products (normalisation, activations and pooling count as zero), attention's two
matrix products included (on the CPU too, where PyTorch's counter misses them). F_k is cumulative:
the stem, blocks 1..k and exits 1..k, because an early-exit run evaluates every earlier exit on
its way to exit k. Only the model is counted: training-only parts (MATE's weight network, the
teachers) live in the objective and never run at inference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List

import torch
from torch import Tensor, nn

from ..models import MultiExitNetwork


def _attention_flops(query, key, value, *args, out_shape=None, **kwargs) -> int:
    """Q K^T and (attention) V of scaled dot-product attention on shapes (..., N, d)."""
    batch = math.prod(query[:-2])
    return 2 * batch * query[-2] * key[-2] * query[-1] + 2 * batch * query[-2] * key[-2] * value[-1]


# Ops whose FLOPs PyTorch's counter does not know: the CPU kernel of F.scaled_dot_product_attention
# (its CUDA kernels are counted by the counter itself, with the same formula).
EXTRA_FORMULAS = {op: _attention_flops for op in
                  [getattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu", None)] if op is not None}


def count_flops(module: nn.Module, *inputs: Tensor) -> int:
    """FLOPs (2 x MACs) of one call of ``module`` on ``inputs``."""
    from torch.utils.flop_counter import FlopCounterMode  # imported here: it pulls in Triton (slow to import)

    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with counter, torch.no_grad():
        module(*inputs)
    return int(counter.get_total_flops())


def count_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@dataclass
class ExitCosts:
    """Per-exit cost, each list K long. ``flops`` and ``params`` are cumulative (F_k, P_k)."""

    flops: List[int]
    params: List[int]
    input_shape: tuple

    @property
    def num_exits(self) -> int:
        return len(self.flops)

    def relative(self) -> List[float]:
        """F_k / F_K: the share of the full network's cost spent to reach exit k."""
        return [f / self.flops[-1] for f in self.flops]

    def as_tensor(self) -> Tensor:
        return torch.tensor(self.flops, dtype=torch.float64)


@torch.no_grad()
def exit_costs(model: MultiExitNetwork) -> ExitCosts:
    """F_k and P_k of every exit, measured on one input of the model's shape in eval mode."""
    was_training = model.training
    model.eval()
    p = next(model.parameters())
    x = torch.zeros(1, model.in_channels, model.input_size, model.input_size, device=p.device, dtype=p.dtype)
    flops_total = count_flops(model.stem, x)
    params_total = count_params(model.stem)
    h = model.stem(x)
    flops, params = [], []
    for block, exit_ in zip(model.stages, model.exits):
        flops_total += count_flops(block, h)
        h = block(h)
        flops_total += count_flops(exit_, h)
        params_total += count_params(block) + count_params(exit_)
        flops.append(flops_total)
        params.append(params_total)
    model.train(was_training)
    return ExitCosts(flops, params, tuple(x.shape[1:]))


def format_cost_table(costs: ExitCosts) -> str:
    """One row per exit: F_k in MFLOPs and in MMACs (FLOPs / 2), F_k / F_K, cumulative parameters."""
    lines = ["| exit | MFLOPs (F_k, cumulative) | MMACs | F_k / F_K | params (cumulative) |",
             "|---|---:|---:|---:|---:|"]
    for k, (f, r, n) in enumerate(zip(costs.flops, costs.relative(), costs.params), start=1):
        lines.append(f"| {k} | {f / 1e6:.2f} | {f / 2e6:.2f} | {r:.3f} | {n / 1e6:.3f} M |")
    return "\n".join(lines)
