"""Where a training step stands against this machine's limits (a roofline).

Measures, in one process:
  * the machine's peaks: a large fp32 and bf16 matrix product (GFLOP/s) and a large tensor copy
    (GB/s, bytes read + written);
  * one MATE training step of the main job's network (width-16 multi-exit ResNet-18, 1x28x28):
    its FLOPs from PyTorch's FlopCounterMode (forward + backward), its median time, and so its
    achieved GFLOP/s;
  * the step's time by kind of operation (torch.profiler, self time), with each kind's FLOPs
    (FlopCounterMode) or, for the element-wise kinds (BatchNorm, ReLU, residual add), the least
    bytes they must move, which says whether the kind is compute- or memory-bound.

    .venv/bin/python benchmarks/roofline.py --batch 256 --threads 2 --out docs/results/roofline

Writes roofline.txt (the tables) and roofline.png (each kind placed by arithmetic intensity and
achieved GFLOP/s under the fp32/bf16 compute roofs and the memory roof).
"""
from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict
from pathlib import Path

import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

import mate
from mate.engine import TrainStep

KINDS = {  # profiler op name -> kind
    "aten::mkldnn_convolution": "conv forward", "aten::convolution_backward": "conv backward",
    "aten::native_batch_norm": "batchnorm", "aten::native_batch_norm_backward": "batchnorm",
    "aten::_native_batch_norm_legit": "batchnorm", "aten::_native_batch_norm_legit_functional": "batchnorm",
    "aten::relu_": "relu", "aten::clamp_min_": "relu", "aten::threshold_backward": "relu",
    "aten::add": "residual add / grads", "aten::add_": "residual add / grads",
    "aten::addmm": "linear", "aten::mm": "linear", "aten::bmm": "linear",
}
FLOP_KINDS = {"convolution": "conv forward", "convolution_backward": "conv backward", "addmm": "linear",
              "mm": "linear", "bmm": "linear"}


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def peaks(size: int, repeats: int) -> dict:
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        out[f"matmul {name} GFLOP/s"] = 2 * size**3 / _median_time(lambda: a @ b, repeats) / 1e9  # noqa: B023 (called here)
    src = torch.randn(64 * 2**20)  # 256 MiB
    dst = torch.empty_like(src)
    dst.copy_(src)
    out["copy GB/s"] = 2 * src.numel() * 4 / _median_time(lambda: dst.copy_(src), repeats) / 1e9
    return out


def least_bytes(model: nn.Module, x: torch.Tensor) -> tuple[dict, dict]:
    """The least bytes each kind must move in one fp32 training step, and the element-wise kinds'
    FLOPs (which FlopCounterMode does not count), from one forward pass's shapes.

    conv forward: read input and weight, write output; conv backward: read input, output gradient
    and weight, write input and weight gradients. BatchNorm: forward reads x twice (statistics, then
    normalisation) and writes y; backward reads x and dy twice and writes dx (8 moves, ~10 FLOPs per
    element). ReLU: forward reads and writes, backward reads mask and dy and writes dx (5 moves,
    2 FLOPs per element)."""
    nbytes, flops = defaultdict(float), defaultdict(float)

    def hook(module, inputs, output):
        n_in, n_out = inputs[0].numel(), output.numel()
        if isinstance(module, nn.Conv2d):
            w = module.weight.numel()
            nbytes["conv forward"] += 4 * (n_in + w + n_out)
            nbytes["conv backward"] += 4 * (n_in + n_out + w + n_in + w)
        elif isinstance(module, nn.BatchNorm2d):
            nbytes["batchnorm"] += 4 * 8 * n_in
            flops["batchnorm"] += 10 * n_in
        elif isinstance(module, nn.ReLU):
            nbytes["relu"] += 4 * 5 * n_in
            flops["relu"] += 2 * n_in

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (nn.Conv2d, nn.BatchNorm2d, nn.ReLU))]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return dict(nbytes), dict(flops)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--matmul-size", type=int, default=2048)
    p.add_argument("--out", default="docs/results/roofline")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    mate.tune_cpu_allocator()
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)

    roofs = peaks(args.matmul_size, args.repeats)

    torch.manual_seed(0)
    model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=args.width, input_size=28)
    model = model.to(memory_format=torch.channels_last)
    objective = mate.create_objective("mate", num_exits=model.num_exits, feature_dim=model.feature_dim,
                                      num_classes=10)
    step_module = TrainStep(model, objective)
    opt = torch.optim.SGD(step_module.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(args.batch, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,))

    def step() -> None:
        loss, _ = step_module(x, y, 100.0)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    with FlopCounterMode(display=False) as counter:
        step()
    flops_by_op = {str(op).split(".")[-1]: n for op, n in counter.get_flop_counts()["Global"].items()}
    total_flops = counter.get_total_flops()
    step_time = _median_time(step, args.repeats)

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        step()
    kind_time = defaultdict(float)
    profiled = 0.0
    for e in prof.key_averages():
        kind_time[KINDS.get(e.key, "other")] += e.self_cpu_time_total / 1e6
        profiled += e.self_cpu_time_total / 1e6
    kind_flops = defaultdict(float)
    for op, n in flops_by_op.items():
        kind_flops[FLOP_KINDS.get(op, "other")] += n
    kind_bytes, elementwise_flops = least_bytes(model, x)
    for kind, n in elementwise_flops.items():
        kind_flops[kind] += n

    lines = [f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, width {args.width}",
             "", "| machine peak | value |", "|---|---:|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in roofs.items()]
    achieved = total_flops / step_time / 1e9
    balance = roofs["matmul fp32 GFLOP/s"] / roofs["copy GB/s"]
    lines += ["", f"training step: {total_flops / 1e9:.2f} GFLOP (FlopCounterMode, forward + backward), "
                  f"median {step_time * 1e3:.1f} ms -> {achieved:.1f} GFLOP/s = "
                  f"{achieved / roofs['matmul fp32 GFLOP/s']:.1%} of the fp32 matmul peak",
              f"machine balance (fp32 matmul peak / copy bandwidth): {balance:.1f} FLOP/byte",
              "", "| kind | time share | GFLOP | least GB moved | FLOP/byte | achieved GFLOP/s | achieved GB/s "
                  "| bound |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    points = []
    for kind in sorted(kind_time, key=lambda k: -kind_time[k]):
        t, gflop, gb = kind_time[kind], kind_flops.get(kind, 0.0) / 1e9, kind_bytes.get(kind, 0.0) / 1e9
        if not (gflop and gb):
            lines.append(f"| {kind} | {t / profiled:.1%} | {gflop:.2f} | | | | | |")
            continue
        intensity = gflop / gb
        bound = "memory" if intensity < balance else "compute"
        lines.append(f"| {kind} | {t / profiled:.1%} | {gflop:.2f} | {gb:.2f} | {intensity:.1f} | "
                     f"{gflop / t:.1f} | {gb / t:.1f} | {bound} |")
        points.append((kind, intensity, gflop / t))
    text = "\n".join(lines)
    print(text)
    (out_dir / "roofline.txt").write_text(text + "\n")
    _plot(out_dir / "roofline.png", roofs, points, achieved, total_flops / step_time / 1e9)


def _plot(path: Path, roofs: dict, points: list, achieved: float, _: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bw = roofs["copy GB/s"]
    intensity = [2**i for i in range(-5, 9)]
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for name, style in (("matmul fp32 GFLOP/s", "k-"), ("matmul bf16 GFLOP/s", "k--")):
        ax.plot(intensity, [min(roofs[name], bw * i) for i in intensity], style,
                label=name.replace(" GFLOP/s", " roof"))
    for kind, i, rate in points:
        ax.scatter([i], [rate], label=kind)
    ax.axhline(achieved, color="tab:red", lw=0.8, ls=":", label="whole training step")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP per byte, least traffic)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title("Training step of the main job's network against this machine's roofs", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
