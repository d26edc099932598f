"""Time one MATE training step against one CE step: same model, same batch, one run.

The two objectives are timed in alternation (CE, MATE, CE, MATE, ...) so that both see the
same machine state; the ratio of the medians is the figure reported.

    .venv/bin/python benchmarks/step_overhead.py --width 16 --batch 256 --repeats 30
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

import mate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet18")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--classes", type=int, default=10)
    p.add_argument("--repeats", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    args = p.parse_args()

    torch.manual_seed(0)
    model = mate.create_model(args.model, num_classes=args.classes, in_channels=args.channels,
                              width=args.width, input_size=args.size).to(memory_format=torch.channels_last)
    objectives = {
        name: mate.create_objective(name, num_exits=model.num_exits, feature_dim=model.feature_dim,
                                    num_classes=args.classes)
        for name in ("ce", "mate")
    }
    params = list(model.parameters()) + list(objectives["mate"].parameters())
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, args.channels, args.size, args.size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, args.classes, (args.batch,))

    def step(name: str) -> float:
        t0 = time.perf_counter()
        loss, _ = objectives[name](model(x), y, 100.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return time.perf_counter() - t0

    for _ in range(args.warmup):
        step("ce"), step("mate")
    times = {"ce": [], "mate": []}
    for _ in range(args.repeats):
        for name in ("ce", "mate"):
            times[name].append(step(name))
    ce, mt = statistics.median(times["ce"]), statistics.median(times["mate"])
    print(f"model {args.model} width {args.width}, batch {args.batch} x {args.channels}x{args.size}x{args.size}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"CE step   median {ce * 1e3:8.2f} ms")
    print(f"MATE step median {mt * 1e3:8.2f} ms")
    print(f"ratio MATE / CE: {mt / ce:.3f}")


if __name__ == "__main__":
    main()
