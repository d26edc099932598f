"""How much of an early-exit speed-up a CPU can deliver, before any predictor runs.

For a model (random weights: dense kernels take the same time whatever the values), time each
piece of the network on full batches (stem + block 1 + exit 1, then block k + exit k), on
prepare_for_inference's copy (BatchNorm folded, NHWC), and compare the share of the time spent
up to exit k with the share of FLOPs, F_k / F_K. Given exit shares (default: the main job's
operating point in docs/inference.md), the time-predicted speed-up bounds any early-exit
runtime on this machine, and bound / FLOPs-predicted speed-up bounds its efficiency.

    .venv/bin/python benchmarks/stage_times.py --widths 16 32 64 --batch-size 64 256
"""
from __future__ import annotations

import argparse
import statistics

import torch

import mate
from early_exit import TorchBackend
from mate.evaluation import exit_costs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--batch-size", type=int, nargs="+", default=[64, 256])
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--shares", default="0.846,0.129,0.021,0.003", help="exit shares, comma-separated")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()

    mate.tune_cpu_allocator()
    shares = torch.tensor([float(s) for s in args.shares.split(",")], dtype=torch.float64)
    print(f"{args.model}, input {args.channels}x{args.size}x{args.size}, torch threads {torch.get_num_threads()}, "
          f"exit shares {args.shares}")
    print("| width | batch | ms per image x1000 | time share up to exit k | F_k / F_K | FLOPs-predicted |"
          " time-predicted | efficiency bound |")
    print("|---:|---:|---:|---|---|---:|---:|---:|")
    for width in args.widths:
        torch.manual_seed(0)
        model = mate.create_model(args.model, num_classes=args.classes, in_channels=args.channels, width=width,
                                  input_size=args.size)
        costs = exit_costs(model)
        if len(shares) != model.num_exits:
            raise SystemExit(f"give {model.num_exits} exit shares")
        flops_rel = torch.tensor(costs.relative(), dtype=torch.float64)
        flops_pred = 1 / float((shares * flops_rel).sum())
        backend = TorchBackend(mate.prepare_for_inference(model), 0.5, "max_prob", costs)
        for batch in args.batch_size:
            x = torch.randn(batch, args.channels, args.size, args.size)
            for _ in range(3):
                backend.pieces(x)
            runs = [backend.pieces(x) for _ in range(args.repeats)]
            piece = torch.tensor([statistics.median(r[k] for r in runs) for k in range(model.num_exits)],
                                 dtype=torch.float64)
            cum = piece.cumsum(0) / piece.sum()
            time_pred = 1 / float((shares * cum).sum())
            print(f"| {width} | {batch} | {piece.sum() / batch * 1e6:.1f} | "
                  + " / ".join(f"{c:.3f}" for c in cum.tolist()) + " | "
                  + " / ".join(f"{c:.3f}" for c in flops_rel.tolist())
                  + f" | {flops_pred:.2f}x | {time_pred:.2f}x | {time_pred / flops_pred:.3f} |")


if __name__ == "__main__":
    main()
