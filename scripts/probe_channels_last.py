"""Which convolutions crash PyTorch's channels-last CPU backward (docs/reliability.md).

Every case runs in its own forked process, so a crash is a result rather than the end of the
probe: one Conv2d in NHWC, forward and backward, its gradients compared with the NCHW ones.
Each case prints one JSON line; "status" is the child's wait status: 0 clean, 6 abort (glibc
"double free or corruption"), 11 segfault, 1024 or 1280 wrong weight or input gradients.

    LD_PRELOAD=/lib/x86_64-linux-gnu/libc_malloc_debug.so GLIBC_TUNABLES=glibc.malloc.check=3 \\
        .venv/bin/python scripts/probe_channels_last.py > probe.jsonl

glibc's heap checker (the two variables) reports corruption that the default allocator lets
pass. ``--grid NAME`` runs one of the grids below; the default runs them all (about 1,200 cases,
an hour or two on 2 busy cores).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os

import torch

# name -> the values of every case parameter; each grid is their Cartesian product
GRIDS = {
    "pointwise_stride2": dict(cin=[1, 2, 3, 4, 6, 8, 12, 16, 24, 32], cout=[8, 16, 32, 64], k=[1], s=[2],
                              size=[28, 32, 40, 48, 56, 64, 96], b=[64], threads=[1]),
    "kernels_and_strides": dict(cin=[1, 3, 8, 16], cout=[8, 16, 32], k=[1, 3], s=[1, 2], size=[28, 48, 64, 96],
                                b=[64], threads=[1]),
    "batch": dict(cin=[3, 8, 16], cout=[16, 32], k=[1], s=[2], size=[32, 48, 64], b=[1, 2, 8, 16, 32, 128, 256],
                  threads=[1]),
    "threads": dict(cin=[3, 8, 16], cout=[16, 32], k=[1], s=[2], size=[28, 32, 48, 64], b=[64], threads=[2]),
    "sides": dict(cin=[2, 4, 8, 12, 15], cout=[8, 16, 32, 64, 128], k=[1], s=[2], size=[33, 36, 40, 44, 48, 128, 160],
                  b=[32], threads=[1]),
    "wide_inputs": dict(cin=[1, 16, 17, 20, 24, 32, 48, 64], cout=[16, 32, 64, 128], k=[1], s=[2], size=[128, 224],
                        b=[8], threads=[1]),
    "larger_strides": dict(cin=[2, 4, 8, 12, 16], cout=[8, 16, 32], k=[1], s=[3, 4], size=[32, 48, 64, 96], b=[32],
                           threads=[1]),
    "resize_exits": dict(cin=[2, 4, 8, 16], cout=[8, 16, 32], k=[2, 4], s=[2, 4], size=[28, 32, 48, 64, 96], b=[32],
                         threads=[1], pad=[0]),
}


def case(cin: int, cout: int, k: int, s: int, size: int, b: int, threads: int, pad: int | None = None) -> None:
    """Forward and backward of one NHWC convolution; exits 4 or 5 when a gradient is wrong."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    padding = k // 2 if pad is None else pad
    conv = torch.nn.Conv2d(cin, cout, k, stride=s, padding=padding, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(b, cin, size, size).contiguous(memory_format=torch.channels_last).requires_grad_()
    grad = torch.randn_like(conv(x))
    conv(x).backward(grad)
    ref = torch.nn.Conv2d(cin, cout, k, stride=s, padding=padding, bias=False)
    ref.load_state_dict(conv.state_dict())
    xr = x.detach().contiguous().requires_grad_()
    ref(xr).backward(grad.contiguous())
    # summation order differs between the layouts: compare against the gradient's own scale
    if (ref.weight.grad - conv.weight.grad).abs().max() > 1e-4 * ref.weight.grad.abs().max():
        os._exit(4)
    if (xr.grad - x.grad).abs().max() > 1e-4 * xr.grad.abs().max():
        os._exit(5)


def run(params: dict) -> int:
    """The wait status of ``case(**params)`` run in a forked child."""
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), 2)  # glibc's and PyTorch's messages: the status says it
            case(**params)
            os._exit(0)
        except BaseException:
            os._exit(3)
    return os.waitpid(pid, 0)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--grid", choices=sorted(GRIDS), action="append", help="default: every grid")
    for name in parser.parse_args().grid or list(GRIDS):
        grid = GRIDS[name]
        for values in itertools.product(*grid.values()):
            params = dict(zip(grid, values))
            print(json.dumps({"grid": name, **params, "status": run(params)}), flush=True)


if __name__ == "__main__":
    main()
