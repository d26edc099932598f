"""Time one MATE training step under each speed option against the default, in one run.

Options (the run.* config switches): channels_last off, bf16 autocast, torch.compile; and fewer,
larger steps (twice the batch, in fp32 and bf16). Each variant has its own copy of the model and
optimizer; the variants are timed in alternation (default, A, B, ..., default, A, B, ...) so that
all see the same machine state. The figure reported is the ratio of median time per image to the
default's (below 1: faster; for the variants at the default batch, the ratio of step medians).

    .venv/bin/python benchmarks/speed_options.py --width 16 --batch 256 --repeats 20
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import time

import torch

import mate
from mate.engine import TrainStep

VARIANTS = {
    # name: (channels_last, amp, compile, batch multiple)
    "default (channels_last, fp32)": (True, "none", False, 1),
    "channels_last off": (False, "none", False, 1),
    "bf16 autocast": (True, "bf16", False, 1),
    "torch.compile": (True, "none", True, 1),
    "batch x2": (True, "none", False, 2),
    "bf16 autocast, batch x2": (True, "bf16", False, 2),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--skip", nargs="*", default=[], help="variant names to leave out")
    args = p.parse_args()

    torch.manual_seed(0)
    base = mate.create_model("resnet18", num_classes=10, in_channels=1, width=args.width, input_size=28)
    x = torch.randn(2 * args.batch, 1, 28, 28)
    y = torch.randint(0, 10, (2 * args.batch,))
    steps = {}
    for name, (channels_last, amp, compiled, multiple) in VARIANTS.items():
        if name in args.skip:
            continue
        model = copy.deepcopy(base)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        objective = mate.create_objective("mate", num_exits=model.num_exits, feature_dim=model.feature_dim,
                                          num_classes=10)
        step = TrainStep(model, objective)
        optimizer = torch.optim.SGD(step.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        run = torch.compile(step) if compiled else step
        n = multiple * args.batch
        xb = x[:n].contiguous(memory_format=torch.channels_last) if channels_last else x[:n].contiguous()
        steps[name] = timed_step(run, optimizer, xb, y[:n], amp)

    compile_s = {}
    for name, step in steps.items():
        t0 = time.perf_counter()
        for _ in range(args.warmup):
            step()
        compile_s[name] = time.perf_counter() - t0
    times = {name: [] for name in steps}
    for _ in range(args.repeats):
        for name, step in steps.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)

    default = statistics.median(times["default (channels_last, fp32)"])
    print(f"ResNet-18 width {args.width}, MATE objective, batch {args.batch} x 1x28x28, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.repeats} interleaved repeats")
    print(f"| option | batch | median step | ratio to default, per image | warm-up ({args.warmup} steps) |")
    print("|---|---:|---:|---:|---:|")
    for name, ts in times.items():
        m, multiple = statistics.median(ts), VARIANTS[name][3]
        print(f"| {name} | {multiple * args.batch} | {m * 1e3:.1f} ms | {m / multiple / default:.3f} | "
              f"{compile_s[name]:.1f} s |")


def timed_step(run, optimizer, x, y, amp: str):
    """One training step of ``run`` (a TrainStep, maybe compiled) on ``(x, y)``, under autocast for bf16."""
    def step() -> None:
        ctx = torch.autocast("cpu", dtype=torch.bfloat16) if amp == "bf16" else contextlib.nullcontext()
        with ctx:
            loss, _ = run(x, y, 100.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return step


if __name__ == "__main__":
    main()
