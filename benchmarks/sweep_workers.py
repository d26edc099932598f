"""A sweep trained by a local pool of single-threaded workers against the same sweep run sequentially.

    .venv/bin/python benchmarks/sweep_workers.py --rounds 2 --workers 2

Each round runs the same small sweep twice from scratch, in alternation: ``mate sweep`` without
``--workers`` (one run after another, each with PyTorch's default threads: all cores), then with
``--workers N`` (N runs at a time, one thread each). The figure is the ratio of the median wall
times, sequential / pool (above 1: the pool is faster). Both include process start-up, data
loading, training, validation and the test of every run, as a user's sweep does.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SWEEP = ["--config", "fashion_mnist_bench", "--grid", "method=ce,mate", "--seeds", "2",
         "--set", "data.train_subset=4000", "optim.epochs=2", "data.val_size=2000", "data.test_subset=2000",
         "run.tensorboard=false"]


def run_sweep(out: Path, workers: int) -> float:
    command = [sys.executable, "-m", "mate", "sweep", *SWEEP, "--out", str(out)]
    if workers > 1:
        command += ["--workers", str(workers)]
    t0 = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    sequential, pool = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for name, workers, times in (("sequential", 1, sequential), (f"workers={args.workers}", args.workers, pool)):
                elapsed = run_sweep(Path(tmp) / f"{name}-{r}", workers)
                times.append(elapsed)
                print(f"round {r} {name}: {elapsed:.1f} s", flush=True)
    s, w = statistics.median(sequential), statistics.median(pool)
    print(f"\nsweep: {' '.join(SWEEP)} (4 runs)")
    print(f"sequential: median {s:.1f} s; --workers {args.workers}: median {w:.1f} s; speed-up {s / w:.2f}x")


if __name__ == "__main__":
    main()
