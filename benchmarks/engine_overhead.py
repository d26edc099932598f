"""The training engine against a bare loop: images per second of one epoch, and where an epoch goes.

    .venv/bin/python benchmarks/engine_overhead.py --config fashion_mnist_quick --rounds 3 [KEY=VALUE ...]

One process builds the run of ``mate train`` (same config, threads and allocator settings as
the command) and times, in alternation (engine, bare, engine, bare, ...):

- **engine**: ``Trainer.run_epoch``, i.e. what ``mate train`` does each epoch: the training loop
  (divergence watch, per-exit training accuracy, log sums, scheduler), validation when due, the
  epoch's record in metrics.jsonl and the trackers, and the last/best checkpoints;
- **bare**: a minimal loop over the same loader, model, objective and optimizer: forward, loss,
  backward, optimizer and scheduler step, nothing else.

Both see the same batches (the loader's epoch seed is reset), so their data cost is the same. The
figure is the ratio of median images per second, engine / bare (1.0: the engine costs nothing).
Then one more engine epoch runs under ``torch.profiler`` and the time of the engine's labelled
phases (``mate.engine.step.PHASES``) is summed: data, forward, loss, backward, optimizer,
metrics, validation, logging, checkpoint. Profiling slows every operator a little, so the phase
shares are the figure there, not the absolute times.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from mate.config import load_config
from mate.engine.step import PHASES
from mate.engine.trainer import Trainer
from mate.runtime import tune_cpu_allocator


def bare_epoch(trainer: Trainer, epoch: int) -> None:
    """Forward, loss, backward, step: the least a training epoch can do with these pieces."""
    model, objective, optimizer, scheduler = trainer.model, trainer.objective, trainer.optimizer, trainer.scheduler
    model.train()
    objective.train()
    trainer.data.train.set_epoch(epoch)
    n = trainer.batches_per_epoch
    for i, (x, y) in enumerate(trainer.data.train):
        optimizer.zero_grad(set_to_none=True)
        with trainer.autocast():
            outputs = model(trainer.to_memory_format(x))
        loss, _ = objective(outputs.float(), y, epoch + i / n)
        loss.backward()
        optimizer.step()
        scheduler.step()


def phase_times(trainer: Trainer, epoch: int) -> dict[str, float]:
    """Seconds of each labelled phase in one engine epoch, from torch.profiler's CPU ranges."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t0 = time.perf_counter()
        trainer.run_epoch(epoch)
        total = time.perf_counter() - t0
    sums = {name: 0.0 for name in PHASES}
    labels = {label: name for name, label in PHASES.items()}
    for event in prof.events():
        name = labels.get(event.name)
        if name is not None:
            sums[name] += event.cpu_time_total / 1e6
    sums["total"] = total
    return sums


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", default="fashion_mnist_quick")
    p.add_argument("--rounds", type=int, default=3, help="engine/bare pairs (the first pair also warms up)")
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: PyTorch's default)")
    p.add_argument("--out", default=None, help="write the raw figures as JSON here")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.train_subset=12800")
    args = p.parse_args()

    tune_cpu_allocator()  # as the mate command does
    if args.threads:
        torch.set_num_threads(args.threads)
    config = load_config(args.config, [*args.overrides, "run.progress=false"])
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(config, run_dir=Path(tmp) / "run", log=lambda message: None)
        images = trainer.batches_per_epoch * config.data.batch_size
        engine, bare = [], []
        epoch = 0
        for r in range(args.rounds + 1):  # round 0 warms up both paths and is not counted
            for name, fn, times in (("engine", trainer.run_epoch, engine), ("bare", lambda e: bare_epoch(trainer, e), bare)):
                t0 = time.perf_counter()
                fn(epoch)
                elapsed = time.perf_counter() - t0
                if r > 0:
                    times.append(elapsed)
                print(f"round {r} {name}: {elapsed:.2f} s ({images / elapsed:.0f} images/s)", flush=True)
            epoch = min(epoch + 1, config.optim.epochs - 1)
        phases = phase_times(trainer, epoch)
        trainer.logger.close(True)

    e, b = statistics.median(engine), statistics.median(bare)
    print(f"\n{config.data.name}, {images} training images per epoch, batch {config.data.batch_size}, "
          f"{torch.get_num_threads()} threads, amp={trainer.amp}, objective={config.objective['name']}")
    print(f"engine: median {e:.2f} s = {images / e:.0f} images/s; bare loop: median {b:.2f} s = {images / b:.0f} images/s")
    print(f"engine / bare images per second: {b / e:.3f}")
    print("\nphase breakdown of one engine epoch (torch.profiler):")
    total = phases["total"]
    for name in PHASES:
        print(f"  {name:<11} {phases[name]:8.2f} s  {100 * phases[name] / total:5.1f} %")
    rest = total - sum(phases[name] for name in PHASES)
    print(f"  {'unlabelled':<11} {rest:8.2f} s  {100 * rest / total:5.1f} %")
    print(f"  {'total':<11} {total:8.2f} s")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "overrides": args.overrides, "images": images,
                                              "threads": torch.get_num_threads(), "amp": trainer.amp,
                                              "engine_s": engine, "bare_s": bare, "ratio": b / e,
                                              "phases_s": phases}, indent=2))


if __name__ == "__main__":
    main()
