"""Two intra-op threads on one batch against one thread on half the batch, for one MATE training step.

On a 2-core machine a training job can use both cores in two ways: one process with two intra-op
threads on the whole batch (what ``mate train`` does), or two single-threaded processes on half
the batch each (``torchrun --nproc_per_node=2 -m mate train``, data-parallel). This times the
arithmetic of one step for both, in fp32 and under bf16 autocast, in alternation in one process
(``torch.set_num_threads`` switches between cases): the half-batch single-thread step is what
each of the two processes would compute, before the gradient all-reduce, which it does not count.

    .venv/bin/python benchmarks/threads_vs_processes.py --width 16 --batch 256 --repeats 6
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

import mate
from mate.engine import TrainStep
from speed_options import timed_step  # benchmarks/speed_options.py


def make_step(base: torch.nn.Module, amp: str, batch: int):
    model = copy.deepcopy(base).to(memory_format=torch.channels_last)
    objective = mate.create_objective("mate", num_exits=model.num_exits, feature_dim=model.feature_dim,
                                      num_classes=10)
    step = TrainStep(model, objective)
    optimizer = torch.optim.SGD(step.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    return timed_step(step, optimizer, x, torch.randint(0, 10, (batch,)), amp)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=256, help="the whole batch; a process of two gets half")
    p.add_argument("--repeats", type=int, default=6)
    args = p.parse_args()

    torch.manual_seed(0)
    base = mate.create_model("resnet18", num_classes=10, in_channels=1, width=args.width, input_size=28)
    cases = {}
    for amp in ("none", "bf16"):
        cases[(amp, "one process, 2 threads, whole batch")] = (2, make_step(base, amp, args.batch))
        cases[(amp, "one of 2 processes, 1 thread, half batch")] = (1, make_step(base, amp, args.batch // 2))
    for threads, step in cases.values():  # warm-up
        torch.set_num_threads(threads)
        step()
        step()
    times = {key: [] for key in cases}
    for _ in range(args.repeats):
        for key, (threads, step) in cases.items():
            torch.set_num_threads(threads)
            t0 = time.perf_counter()
            step()
            times[key].append(time.perf_counter() - t0)

    print(f"ResNet-18 width {args.width}, MATE objective, batch {args.batch}, torch {torch.__version__}, "
          f"{args.repeats} interleaved repeats")
    print("| precision | how | median step | ratio to 2 threads, fp32 |")
    print("|---|---|---:|---:|")
    reference = statistics.median(times[("none", "one process, 2 threads, whole batch")])
    for (amp, how), ts in times.items():
        m = statistics.median(ts)
        print(f"| {'fp32' if amp == 'none' else 'bf16'} | {how} | {m * 1e3:.1f} ms | {m / reference:.3f} |")


if __name__ == "__main__":
    main()
