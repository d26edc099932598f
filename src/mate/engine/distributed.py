"""Several processes through torchrun: process group, DDP, BatchNorm over the global batch,
and evaluation results gathered in their original order.

torchrun sets RANK, WORLD_SIZE and LOCAL_RANK. A plain ``mate train`` sets none of them and runs
as a world of one through the same code: every helper here is then a no-op.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, Sequence, TypeVar

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from ..errors import MateError

T = TypeVar("T")


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this context created the process group, so it destroys it

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False


def init_distributed(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun describes; NCCL on CUDA (one GPU per process), else gloo."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), device
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return DistContext(rank, world_size, local_rank, owns), device


def run_on_main(ctx: DistContext, fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result, or its MateError, to every rank.

    Used for what touches the run folder (checks, checkpoint reads), so that every rank
    stops with the same message instead of the others waiting forever for rank 0, and so that
    only rank 0 needs the run folder (no shared file system needed).
    """
    if not ctx.enabled:
        return fn()
    box: list[Any] = [None, None]
    if ctx.is_main:
        try:
            box[0] = fn()
        except MateError as exc:
            box[1] = (type(exc), str(exc))
    dist.broadcast_object_list(box, src=0)
    if box[1] is not None:
        kind, message = box[1]
        raise kind(message)
    return box[0]


def all_reduce_sum(tensor: Tensor) -> Tensor:
    if dist.is_initialized() and dist.get_world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def interleave_rank_chunks(per_rank: Sequence[Tensor], per_rank_sizes: Sequence[Sequence[int]],
                           dim: int = 0) -> Tensor:
    """Undo the eval loaders' sharding: batch j of the whole split is rank 0's j-th chunk,
    then rank 1's j-th chunk, and so on (each global batch is cut into contiguous rank slices).
    """
    chunks = [list(t.split(list(sizes), dim)) for t, sizes in zip(per_rank, per_rank_sizes)]
    num_batches = len(per_rank_sizes[0])
    return torch.cat([rank_chunks[j] for j in range(num_batches) for rank_chunks in chunks], dim)


def gather_batches(ctx: DistContext, local: Tensor, local_sizes: Sequence[int], dim: int,
                   device: torch.device) -> Tensor:
    """Every rank's ``local`` rows (``local_sizes`` per batch, along ``dim``), in split order.

    all_gather needs equal shapes, so each rank pads to the longest share; the per-batch sizes
    travel first and say which rows are real. Nothing is duplicated or dropped.
    """
    if not ctx.enabled:
        return local
    sizes = torch.tensor(list(local_sizes), dtype=torch.long, device=device)
    all_sizes = [torch.empty_like(sizes) for _ in range(ctx.world_size)]
    dist.all_gather(all_sizes, sizes)
    totals = [int(s.sum()) for s in all_sizes]
    padded_shape = list(local.shape)
    padded_shape[dim] = max(totals)
    padded = local.new_zeros(padded_shape).to(device)
    padded.narrow(dim, 0, local.shape[dim]).copy_(local)
    gathered = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded)
    per_rank = [g.narrow(dim, 0, n).to(local.device) for g, n in zip(gathered, totals)]
    return interleave_rank_chunks(per_rank, [s.tolist() for s in all_sizes], dim)


def wrap_for_training(ctx: DistContext, step: nn.Module, device: torch.device) -> nn.Module:
    """``step`` (a TrainStep) in DistributedDataParallel under torchrun; unchanged in a world of one."""
    if not ctx.enabled:
        return step
    from torch.nn.parallel import DistributedDataParallel

    # Each rank's loss is a mean over its equal share of the global batch, so DDP's mean of
    # the ranks' gradients is the gradient of the global-batch mean.
    return DistributedDataParallel(step, device_ids=[device.index] if device.type == "cuda" else None)


def all_reduce_sum_differentiable(tensor: Tensor) -> Tensor:
    """Sum over ranks; its gradient is the sum over ranks of the gradients (autograd-aware)."""
    if not (dist.is_initialized() and dist.get_world_size() > 1):
        return tensor
    from torch.distributed._functional_collectives import all_reduce

    return all_reduce(tensor, "sum", dist.group.WORLD)


class CPUSyncBatchNorm(_BatchNorm):
    """BatchNorm with statistics over the global batch, for CPU processes (gloo).

    torch's nn.SyncBatchNorm runs on accelerators only. This computes the same thing with two
    differentiable all-reduces (the mean, then the centred second moment, as single-process
    BatchNorm does), so gradients also flow through the other ranks' statistics. With one
    process it is the same arithmetic without the all-reduces, so a run gives the same result
    (up to float summation order) whatever the number of processes.
    """

    def _check_input_dim(self, input: Tensor) -> None:
        if input.dim() < 2:
            raise ValueError(f"expected at least 2D input (got {input.dim()}D input)")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training:
            return super().forward(x)
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))  # statistics of bf16 activations in float32
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        sums = all_reduce_sum_differentiable(torch.cat([x.sum(dims), count]))
        total = sums[-1]
        mean = sums[:-1] / total
        centred = x - mean.view(shape)
        var = all_reduce_sum_differentiable((centred * centred).sum(dims)) / total
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * total / (total - 1), alpha=m)
        out = centred * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Every BatchNorm layer of ``module`` computes its statistics over the global batch."""
    if device.type != "cpu":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    out = module
    if isinstance(module, _BatchNorm) and not isinstance(module, CPUSyncBatchNorm):
        out = CPUSyncBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                               module.track_running_stats)
        if module.affine:
            out.weight, out.bias = module.weight, module.bias
        out.running_mean, out.running_var = module.running_mean, module.running_var
        out.num_batches_tracked = module.num_batches_tracked
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_cpu(child))
    return out

