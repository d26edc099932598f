"""Batched early exit against the full network, on the same test batches, side by side.

The operating point is the q of MSDNet's protocol (thresholds calibrated on the validation
split) with the lowest average cost whose *test* accuracy is within --tolerance points of the
last exit's. Using test accuracy here follows the benchmark's definition of its operating
point; every other selection in the project uses the validation split. Calibration, accuracy
and the offline simulation use the logits of the network that is timed.

Backends (--backend):
  torch        EarlyExitPredictor against model(x), both on prepare_for_inference's copy
               (BatchNorm folded, NHWC); --as-trained runs the checkpoint's network unchanged
  onnxruntime  OnnxEarlyExitPredictor (the exported stage graphs) against the exported
               all-exits graph, multi_exit.onnx

Each batch is timed twice per repeat, full network and predictor, in alternating order
(ABBA) so that drifting machine load hits both equally; the figures are medians over repeats
of the summed batch times. Reported: wall-clock speed-up (full / predictor), FLOPs-predicted
speed-up (F_K / average F spent per sample) and their ratio, the efficiency. Also the share of
the full network's time spent up to each exit (each piece timed on full batches) and the
speed-up those times predict: the bound of any early-exit runtime on this machine.

    .venv/bin/mate train run.name=main_mate          # the main job, if not trained yet
    .venv/bin/python benchmarks/early_exit.py --checkpoint runs/main_mate/best.pt --repeats 5 --batch-size 64 256
    .venv/bin/python benchmarks/early_exit.py --checkpoint runs/main_mate/best.pt --repeats 5 --backend onnxruntime
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import torch

from mate import EarlyExitPredictor, prepare_for_inference, tune_cpu_allocator
from mate.engine import load_trained
from mate.evaluation import ExitLogits, budget_curve, collect_exit_logits, exit_costs, exit_scores, simulate


class TorchBackend:
    def __init__(self, model, thresholds, score, costs):
        self.model = model
        self.predictor = EarlyExitPredictor(model, thresholds=thresholds, score=score, costs=costs)

    def full(self, x):
        with torch.inference_mode():
            self.model(x)

    def exits(self, x):
        return self.predictor(x).exits

    def pieces(self, x) -> list[float]:
        """Wall time of each piece (stem + block 1 + exit 1, then block k + exit k) on the full batch."""
        m, times = self.model, []
        with torch.inference_mode():
            t0 = time.perf_counter()
            h = m.stem(x)
            for block, exit_ in zip(m.stages, m.exits):
                h = block(h)
                exit_(h)
                t1 = time.perf_counter()
                times.append(t1 - t0)
                t0 = t1
        return times


class OnnxBackend:
    def __init__(self, folder, thresholds, score):
        import onnxruntime as ort

        from mate.inference import OnnxEarlyExitPredictor

        self.predictor = OnnxEarlyExitPredictor(folder, thresholds=thresholds, score=score)
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(f"{folder}/{self.predictor.manifest['multi_exit']}", options,
                                            providers=["CPUExecutionProvider"])

    def full(self, x):
        self.session.run(None, {"image": x})

    def exits(self, x):
        return torch.from_numpy(self.predictor(x).exits)

    def pieces(self, x) -> list[float]:
        p, times, h = self.predictor, [], x
        t0 = time.perf_counter()
        for k, session in enumerate(p.sessions):
            h = session.run(None, {p.input_names[k]: h})[0]
            t1 = time.perf_counter()
            times.append(t1 - t0)
            t0 = t1
        return times


def onnx_logits(folder, loader) -> ExitLogits:
    from mate.inference import OnnxEarlyExitPredictor

    probe = OnnxEarlyExitPredictor(folder, thresholds=0.5)
    logits, labels = [], []
    for x, y in loader:
        logits.append(torch.from_numpy(np.stack(probe.stage_logits(x.numpy()))))
        labels.append(y)
    return ExitLogits(torch.cat(logits, dim=1), torch.cat(labels))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="a .pt file written by mate train")
    parser.add_argument("--batch-size", type=int, nargs="+", default=[256], help="one or more batch sizes")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--score", default="max_prob", choices=["max_prob", "patience"],
                        help="(the ONNX predictor computes scores in NumPy; neg_entropy is left out here "
                             "because the operating point is found with PyTorch's scores)")
    parser.add_argument("--tolerance", type=float, default=0.5, help="accuracy points below the last exit")
    parser.add_argument("--backend", choices=["torch", "onnxruntime"], default="torch")
    parser.add_argument("--as-trained", action="store_true",
                        help="torch backend: run the network as trained (no BatchNorm folding, NCHW)")
    parser.add_argument("--default-malloc", action="store_true",
                        help="leave glibc malloc's thresholds alone (the mate command tunes them)")
    args = parser.parse_args()

    tuned = False if args.default_malloc else tune_cpu_allocator()
    trained = load_trained(args.checkpoint, ["run.device=cpu"])
    costs = exit_costs(trained.model)
    if args.backend == "torch":
        model = trained.model.eval() if args.as_trained else prepare_for_inference(trained.model)
        with torch.inference_mode():
            val = collect_exit_logits(model, trained.data.val)
            test = collect_exit_logits(model, trained.data.test)
        what = "as trained (NCHW, BatchNorm)" if args.as_trained else "prepare_for_inference (BatchNorm folded, NHWC)"
        what += f"; torch threads {torch.get_num_threads()}"
    else:
        from mate.inference import export_onnx

        folder = tempfile.mkdtemp(prefix="mate-onnx-")
        export_onnx(trained.model, folder)
        val, test = onnx_logits(folder, trained.data.val), onnx_logits(folder, trained.data.test)
        what = "ONNX Runtime (CPUExecutionProvider, its default threads)"
    last_acc = test.exit_accuracy()[-1]
    curve = budget_curve(val, test, costs.flops, args.score)
    within = [p for p in curve if p.accuracy >= last_acc - args.tolerance]
    if not within:
        raise SystemExit(f"no q reaches {last_acc - args.tolerance:.2f}% test accuracy")
    point = min(within, key=lambda p: p.avg_flops)
    thresholds = torch.tensor(point.thresholds)
    sim = simulate(test, exit_scores(test.logits, args.score), thresholds, costs.flops)
    images = torch.cat([x for x, _ in trained.data.test])
    if args.backend == "torch":
        backend = TorchBackend(model, thresholds[:-1], args.score, costs)
    else:
        backend = OnnxBackend(folder, thresholds[:-1].numpy(), args.score)
        images = images.numpy()

    print(f"checkpoint {args.checkpoint}; {what}; malloc {'tuned' if tuned else 'default'}; score {args.score}")
    print(f"last exit test acc {last_acc:.2f}%; operating point q = {point.q:.2f}, test acc {point.accuracy:.2f}%, "
          f"thresholds {' '.join(f'{t:.4f}' for t in point.thresholds[:-1])}")
    rows = [measure(backend, images, sim, costs, b, args.repeats) for b in args.batch_size]
    print("| batch | F_K (MFLOPs) | avg spent (MFLOPs) | FLOPs-predicted speed-up | wall-clock speed-up | efficiency |"
          " time-predicted speed-up | wall-clock / time-predicted |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(r)


def measure(backend, images, sim, costs, batch_size: int, repeats: int) -> str:
    n_full = len(images) // batch_size * batch_size
    batches = [images[i:i + batch_size] for i in range(0, n_full, batch_size)]

    # the predictor's decisions on these batches are the offline simulation's
    exits = torch.cat([backend.exits(x) for x in batches])
    same = torch.equal(exits, sim.exits[:n_full])
    agree = float((exits == sim.exits[:n_full]).double().mean())

    full_t, pred_t = [], []
    for x in batches[:2]:  # warm-up
        backend.full(x), backend.exits(x)
    for r in range(repeats):
        t_full = t_pred = 0.0
        for i, x in enumerate(batches):
            order = (backend.full, backend.exits) if (i + r) % 2 == 0 else (backend.exits, backend.full)
            for fn in order:
                t0 = time.perf_counter()
                fn(x)
                dt = time.perf_counter() - t0
                if fn == backend.full:
                    t_full += dt
                else:
                    t_pred += dt
        full_t.append(t_full)
        pred_t.append(t_pred)
    t_full, t_pred = statistics.median(full_t), statistics.median(pred_t)
    # Where the FLOPs model and the CPU disagree: the time each piece takes on a full batch,
    # accumulated like F_k, predicts the speed-up if per-sample time did not depend on batch size.
    pieces = [backend.pieces(x) for x in batches[: min(8, len(batches))] for _ in range(repeats)]
    piece_t = [statistics.median(p[k] for p in pieces) for k in range(len(costs.flops))]
    cum_t = torch.tensor(piece_t, dtype=torch.float64).cumsum(0)
    avg_flops = float(costs.as_tensor()[exits].mean())
    wall = t_full / t_pred
    predicted = costs.flops[-1] / avg_flops
    shares = torch.bincount(exits, minlength=len(costs.flops)).double() / len(exits)
    time_predicted = float(cum_t[-1] / (shares * cum_t).sum())
    print(f"batch {batch_size}: {len(batches)} batches; exit shares " + " / ".join(f"{s:.3f}" for s in shares.tolist())
          + ("; predictor exits equal the offline simulation" if same
             else f"; predictor exits equal the offline simulation for {agree:.4%} of the images"))
    print(f"  full network {t_full * 1e3:.0f} ms, predictor {t_pred * 1e3:.0f} ms (median of {repeats} repeats, "
          f"all batches)")
    print("  share of the full batch time spent up to exit k: "
          + " / ".join(f"{float(c / cum_t[-1]):.3f}" for c in cum_t)
          + "; share of F_K: " + " / ".join(f"{r:.3f}" for r in costs.relative()))
    return (f"| {batch_size} | {costs.flops[-1] / 1e6:.2f} | {avg_flops / 1e6:.2f} | {predicted:.2f}x | "
            f"{wall:.2f}x | {wall / predicted:.3f} | {time_predicted:.2f}x | {wall / time_predicted:.3f} |")


if __name__ == "__main__":
    main()
