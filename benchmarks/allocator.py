"""glibc malloc as it comes against mate.tune_cpu_allocator(), in one run.

The allocator is a per-process setting, and glibc's own mmap threshold moves with what the
process has freed so far, so each measurement is a fresh process: rounds of (default, tuned)
processes, alternating which goes first, each timing --steps MATE training steps or --steps
inference passes (a separate process each) of a width-16 ResNet-18 (batch 256, 1x28x28) after
a warm-up of 3, and counting the minor page faults of those steps. Reported: medians over rounds and
the ratio tuned / default (below 1: faster).

    .venv/bin/python benchmarks/allocator.py --rounds 6
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

CHILD = r"""
import json, resource, statistics, sys, time, torch
import mate
from mate.engine import TrainStep
tuned = mate.tune_cpu_allocator() if sys.argv[1] == "tuned" else False
steps, width, batch, what = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
torch.manual_seed(0)
model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=width, input_size=28)
model = model.to(memory_format=torch.channels_last)
objective = mate.create_objective("mate", num_exits=model.num_exits, feature_dim=model.feature_dim, num_classes=10)
step = TrainStep(model, objective)
opt = torch.optim.SGD(step.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
y = torch.randint(0, 10, (batch,))
def train_step():
    loss, _ = step(x, y, 100.0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
def faults():
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt
out = {"applied": tuned}
for name, fn in ((what, train_step if what == "train" else None),):
    if fn is None:
        model.eval()
        def fn():
            with torch.inference_mode():
                model(x)
    for _ in range(3):
        fn()
    f0, times = faults(), []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    out[name] = statistics.median(times)
    out[name + "_faults"] = (faults() - f0) / steps
print(json.dumps(out))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    args = p.parse_args()

    results = {"default": [], "tuned": []}
    for r in range(args.rounds):
        for mode in (("default", "tuned") if r % 2 == 0 else ("tuned", "default")):
            out = {}
            for what in ("train", "inference"):
                cmd = [sys.executable, "-c", CHILD, mode, str(args.steps), str(args.width), str(args.batch), what]
                line = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
                out.update(json.loads(line))
            results[mode].append(out)
    assert all(r["applied"] for r in results["tuned"]), "tune_cpu_allocator() did not apply on this system"
    print(f"ResNet-18 width {args.width}, batch {args.batch}, {args.rounds} rounds x {args.steps} steps")
    print("| measure | default malloc | tune_cpu_allocator() | tuned / default | page faults per step, default -> tuned |")
    print("|---|---:|---:|---:|---|")
    for name in ("train", "inference"):
        d = statistics.median(r[name] for r in results["default"])
        t = statistics.median(r[name] for r in results["tuned"])
        fd = statistics.median(r[name + "_faults"] for r in results["default"])
        ft = statistics.median(r[name + "_faults"] for r in results["tuned"])
        label = "MATE training step" if name == "train" else "inference forward (all exits)"
        print(f"| {label} | {d * 1e3:.1f} ms | {t * 1e3:.1f} ms | {t / d:.3f} | {fd:,.0f} -> {ft:,.0f} |")


if __name__ == "__main__":
    main()
