"""The ``mate`` command line: parses the arguments and calls the subcommand's handler in ``mate.commands``.
Errors a user can cause are printed as one line, no traceback."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Optional, Sequence

from ._version import __version__
from .config import DEFAULT_CONFIG
from .errors import ConfigError, MateError, MateWarning
from .evaluation.scores import SCORES
from .plugins import import_modules
from .runtime import tune_cpu_allocator

DESCRIPTION = """\
MATE: multi-exit self-distillation with appropriate teachers.

Train a multi-exit network with MATE or a baseline objective, and evaluate its exits.
Configs are YAML files (see configs/); any key can be overridden as section.key=value.
"""

EPILOG = """\
examples:
  mate train                                          MATE on Fashion-MNIST (configs/fashion_mnist_quick.yaml)
  mate train --config configs/cifar100_resnet18.yaml data.root=~/data
  mate train objective.name=ce optim.epochs=4          deep-supervision baseline, 4 epochs
  mate train --resume runs/fashion_mnist-resnet18-mate-s0
  mate eval runs/fashion_mnist-resnet18-mate-s0/best.pt
  mate compare --config fashion_mnist_bench --methods ce,byot,mate --seeds 3 --out runs/cmp
  mate report runs/fashion_mnist-resnet18-mate-s0      curves and learning-gap plots
  mate list                                           registered models, objectives, datasets
  mate list --options mate                            MATE's options: type, default, range, meaning
  mate train --config cifar100_resnet18 --print-config      the resolved config, nothing trained
  mate flops runs/fashion_mnist-resnet18-mate-s0/best.pt    FLOPs and parameters per exit
  mate budget RUN_A/best.pt RUN_B/best.pt --out budget      accuracy vs average FLOPs, one plot
  mate predict RUN/best.pt --budget 30 --split test         batched early exit at 30 MFLOPs/sample
  mate export RUN/best.pt --budget 30 --out export/         ONNX graphs + thresholds for deployment
  mate predict export/ --images my_images/                  early exit with ONNX Runtime
"""


def _thresholds(text: Optional[str]) -> Optional[list[float]]:
    """``--threshold T[,T...]`` as numbers."""
    if text is None:
        return None
    try:
        return [float(t) for t in text.split(",")]
    except ValueError:
        raise ConfigError(f"--threshold {text!r}: give numbers separated by commas, e.g. 0.9 or 0.95,0.9,0.8") from None


def _split_overrides(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """Positional words: checkpoints, and section.key=value overrides."""
    paths = [s for s in items if "=" not in s or Path(s).exists()]
    return paths, [s for s in items if s not in paths]


# One adapter per subcommand: the parsed arguments as the handler's plain values. The handlers are
# imported here, when their command runs, so that a command pays only for its own imports.

def cmd_train(args: argparse.Namespace) -> int:
    from .commands.train import train_command

    return train_command(args.config, args.overrides, resume=args.resume, imports=args.imports,
                         print_config=args.print_config)


def cmd_eval(args: argparse.Namespace) -> int:
    from .commands.evaluate import eval_command

    return eval_command(args.checkpoint, split=args.split, as_json=args.json, overrides=args.overrides)


def cmd_compare(args: argparse.Namespace) -> int:
    from .commands.compare import compare_command

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    return compare_command(args.config, methods, seeds=args.seeds, out=args.out, overrides=args.overrides,
                           variants=args.variants, runs=args.runs, archive=args.archive,
                           paired_against=[m for m in (args.paired_against or "").split(",") if m],
                           imports=args.imports, dry_run=args.dry_run, **_launch_options(args))


def cmd_sweep(args: argparse.Namespace) -> int:
    from .commands.sweep import sweep_command

    return sweep_command(args.config, grid=args.grid, points=args.points, seeds=args.seeds, out=args.out,
                         overrides=args.overrides, variants=args.variants, runs=args.runs, archive=args.archive,
                         imports=args.imports, dry_run=args.dry_run, **_launch_options(args))


def _launch_options(args: argparse.Namespace) -> dict:
    """The launcher flags as the keyword arguments of mate.experiments.launchers.LaunchOptions."""
    return dict(launcher=args.launcher, workers=args.workers, nproc_per_run=args.nproc_per_run,
                address=args.address, cpus_per_run=args.cpus_per_run, gpus_per_run=args.gpus_per_run,
                partition=args.partition, time_min=args.time_min, array_parallelism=args.array_parallelism,
                cluster=args.slurm_cluster)


def _add_import_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--import", dest="imports", action="append", default=[], metavar="MODULE",
                   help="import MODULE first, so that the models, datasets and objectives it registers can be "
                        "named (repeatable; train, compare and sweep record it in the config's 'imports', so "
                        "that every process of a run imports it)")


def _add_run_set_args(p: argparse.ArgumentParser, default_out: str) -> None:
    """The options mate compare and mate sweep share: the base config, seeds and where runs go."""
    p.add_argument("--config", help=f"base YAML config (file or shipped name; default: {DEFAULT_CONFIG}, "
                                    "the base of mate train too)")
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 (default 3)")
    p.add_argument("--out", default=default_out, help=f"output folder (default {default_out})")
    p.add_argument("--variants", help="extra YAML of named objective sections (methods)")
    p.add_argument("--runs", help="folder of the training runs (default OUT/runs); share it between "
                                  "comparisons and sweeps so that each run is trained once")
    p.add_argument("--archive", help="folder keeping each finished run's results.json, metrics.jsonl, config.yaml "
                                     "and split.json (no checkpoints); runs found there are not trained again")
    p.add_argument("--dry-run", action="store_true",
                   help="list each run and whether it is finished, restored from the archive, being trained by "
                        "another process, resumed or trained (after checking the configs recorded on disk); train "
                        "and write nothing")


def _add_launcher_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("who trains the runs")
    g.add_argument("--launcher", choices=["local", "ray", "slurm"], default="local",
                   help="local: this machine (default); ray: tasks on a Ray cluster; slurm: a submitit job array")
    g.add_argument("--workers", type=int, default=1,
                   help="local: runs trained at a time, each in its own process with one thread (default 1)")
    g.add_argument("--nproc-per-run", type=int, default=1,
                   help="processes per run (torchrun locally, tasks of one job on Slurm)")
    g.add_argument("--address", help="ray: the cluster's address (default: RAY_ADDRESS, or a local runtime)")
    g.add_argument("--cpus-per-run", type=float, default=1.0, help="ray/slurm: CPUs per run (default 1)")
    g.add_argument("--gpus-per-run", type=float, default=0.0, help="ray/slurm: GPUs per run (default 0)")
    g.add_argument("--partition", help="slurm: partition")
    g.add_argument("--time-min", type=int, default=240, help="slurm: time limit per run in minutes (default 240)")
    g.add_argument("--array-parallelism", type=int, default=64, help="slurm: array jobs at once (default 64)")
    g.add_argument("--slurm-cluster", choices=["slurm", "local", "debug"],
                   help="slurm: submitit's executor (default: slurm when sbatch exists, else local)")


def cmd_report(args: argparse.Namespace) -> int:
    from .commands.report import report_command

    return report_command(args.run_dir)


def cmd_flops(args: argparse.Namespace) -> int:
    from .commands.flops import flops_command

    return flops_command(args.source, overrides=args.overrides, as_json=args.json)


def cmd_budget(args: argparse.Namespace) -> int:
    from .commands.budget import budget_command

    paths, overrides = _split_overrides(args.checkpoints)
    return budget_command(paths, overrides, scores=args.score, out=args.out)


def cmd_predict(args: argparse.Namespace) -> int:
    from .commands.predict import predict_command

    return predict_command(args.checkpoint, budget_mflops=args.budget, thresholds=_thresholds(args.threshold),
                           score=args.score, split=args.split, images=args.images, out=args.out,
                           batch_size=args.batch_size, as_trained=args.as_trained, overrides=args.overrides)


def cmd_export(args: argparse.Namespace) -> int:
    from .commands.export import export_command

    return export_command(args.checkpoint, args.out, budget_mflops=args.budget, thresholds=_thresholds(args.threshold),
                          score=args.score, overrides=args.overrides)


def cmd_list(args: argparse.Namespace) -> int:
    from .commands.listing import list_command

    return list_command(options=args.options, markdown=args.markdown)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mate", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mate {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("train", help="train a multi-exit network and print its per-exit table",
                       description="Train, validate every epoch, keep last/best checkpoints, test the best.")
    p.add_argument("--config", help=f"YAML file or shipped config name (default: {DEFAULT_CONFIG})")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--print-config", action="store_true",
                   help="print the resolved config (file, then overrides) as YAML and exit: nothing is trained "
                        "or written")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides, e.g. optim.lr=0.05")
    _add_import_arg(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="per-exit and ensemble accuracy of a checkpoint",
                       description="Evaluate every exit and the exits' ensemble of a checkpoint.")
    p.add_argument("checkpoint", help="a .pt file written by mate train, or its run folder (its best.pt)")
    p.add_argument("--split", choices=["test", "val", "both"], default="test")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.root=DIR run.device=cpu")
    _add_import_arg(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("compare", help="train methods x seeds under one harness; table, CSV and plots",
                       description="Run every method with every seed from one base config (resumable: re-run "
                                   "the same command to continue), then write OUT/table.md, summary.csv, "
                                   "runs.csv and PNG plots. Methods are objective names or variants from "
                                   "configs/methods.yaml (e.g. okddip, mate_g0.9, mate_uniform).")
    p.add_argument("--methods", required=True, help="comma-separated, e.g. ce,byot,phuong,eed,beed,mate")
    _add_run_set_args(p, "runs/compare")
    p.add_argument("--paired-against", metavar="M1,M2",
                   help="also compare every method seed by seed with these (CE always, when present)")
    _add_launcher_args(p)
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="overrides of the base config")
    _add_import_arg(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("sweep", help="a grid over any config keys x seeds; table, CSV and plots",
                       description="Train every point of a grid (the Cartesian product of --grid KEY=V1,V2 ..., "
                                   "or the points of a YAML file) with every seed, on this machine, a Ray "
                                   "cluster or Slurm. 'method' is a key too (objective names or variants). "
                                   "Resumable: re-run the same command to continue or retry failed runs.")
    p.add_argument("--grid", nargs="+", metavar="KEY=V1,V2", help="e.g. optim.lr=0.05,0.1 method=ce,mate")
    p.add_argument("--points", help="YAML file of named points {name: {key: value}} (instead of --grid)")
    _add_run_set_args(p, "runs/sweep")
    _add_launcher_args(p)
    p.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                   help="overrides of the base config for every point")
    _add_import_arg(p)
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("report", help="render a run as Markdown with curves and learning-gap plots")
    p.add_argument("run_dir", help="a run folder written by mate train")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("flops", help="FLOPs and parameters up to each exit",
                       description="Cumulative FLOPs (2 x MACs) and parameters of every exit, for a config or checkpoint.")
    p.add_argument("source", metavar="CONFIG_OR_CHECKPOINT", help="a .pt file or run folder, a YAML file, or a shipped config name")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. model.width=32")
    _add_import_arg(p)
    p.set_defaults(func=cmd_flops)

    p = sub.add_parser("budget", help="accuracy against average FLOPs under early exit (CSV and PNG)",
                       description="Budgeted batch classification (MSDNet's protocol): thresholds calibrated on the "
                                   "validation split, applied to test; one curve per checkpoint and score.")
    p.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="one or more .pt files (KEY=VALUE overrides may follow)")
    p.add_argument("--score", nargs="+", choices=SCORES, default=["max_prob"],
                   help="exit score(s) (default: max_prob)")
    p.add_argument("--out", default="budget", help="folder for budget.csv, anytime.csv and budget.png (default: ./budget)")
    _add_import_arg(p)
    p.set_defaults(func=cmd_budget)

    p = sub.add_parser("predict", help="batched early-exit prediction on a dataset split or a folder of images",
                       description="Run the early-exit predictor; print accuracy, average cost (MFLOPs and MMACs) and "
                                   "exit shares on a split, or one line per image and that summary on a folder.")
    p.add_argument("checkpoint", help="a .pt file written by mate train or its run folder (its best.pt), or a "
                                      "folder written by mate export (run with ONNX Runtime)")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--budget", type=float, metavar="MFLOPS", help="average MFLOPs per sample; thresholds calibrated on the validation split")
    how.add_argument("--threshold", metavar="T[,T...]", help="one threshold for every exit but the last, or one per exit "
                                                            "(an export folder: default the manifest's)")
    p.add_argument("--score", choices=SCORES,
                   help="exit score (default: max_prob; an export folder: the manifest's)")
    p.add_argument("--split", choices=["test", "val"], default="test", help="dataset split to predict (default: test)")
    p.add_argument("--images", metavar="DIR", help="predict the image files under DIR, sub-folders included (PNG, "
                                                  "JPEG, BMP, WebP, TIFF, PPM, PGM) instead of a split; sub-folders "
                                                  "named after the model's classes give the accuracy")
    p.add_argument("--out", metavar="CSV", help="write one row per sample: label (when known), prediction, "
                                                "predicted_class, exit, MFLOPs")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--as-trained", action="store_true",
                   help="run the network as trained, without folding BatchNorm into the convolutions "
                        "(and without NHWC weights on CPU)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                   help="e.g. data.root=DIR (an export folder: data.* only); give them before the options")
    _add_import_arg(p)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("export", help="ONNX graphs (all exits; one per stage) and a manifest for deployment",
                       description="Export a checkpoint to ONNX: multi_exit.onnx, stage_1..K.onnx and manifest.json "
                                   "(shapes, mean/std, FLOPs per exit, score and thresholds). Run it with "
                                   "`mate predict EXPORT_DIR --images DIR` or mate.inference.OnnxEarlyExitPredictor.")
    p.add_argument("checkpoint", help="a .pt file written by mate train, or its run folder (its best.pt)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--budget", type=float, metavar="MFLOPS", help="store the thresholds for this average cost "
                                                                   "(calibrated on the validation split)")
    how.add_argument("--threshold", metavar="T[,T...]", help="store these thresholds")
    p.add_argument("--score", choices=SCORES, default="max_prob")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. data.root=DIR")
    _add_import_arg(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("list", help="registered models, objectives and datasets; every config option",
                       description="The registered models, objectives and datasets; with --options, config keys "
                                   "with their type, default, valid range and meaning.")
    p.add_argument("--options", nargs="?", const="", metavar="NAME",
                   help="the options of a model, objective or dataset, or of a section (data, model, objective, "
                        "optim, run); without NAME, every option")
    p.add_argument("--markdown", action="store_true",
                   help="with --options: Markdown tables (--options --markdown is docs/config_reference.md)")
    _add_import_arg(p)
    p.set_defaults(func=cmd_list)
    return parser


def _warning_printer(fallback):
    """``warnings.showwarning`` that prints a MateWarning as one line, like an error, and passes other
    warnings to ``fallback``."""
    def show(message, category, *where):
        if issubclass(category, MateWarning):
            print(f"mate: warning: {message}", file=sys.stderr)
        else:
            fallback(message, category, *where)

    return show


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    tune_cpu_allocator()
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        import_modules(getattr(args, "imports", ()), "--import")
        with warnings.catch_warnings():
            warnings.simplefilter("always", MateWarning)
            warnings.showwarning = _warning_printer(warnings.showwarning)
            return args.func(args)
    except MateError as exc:
        print(f"mate: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("mate: interrupted; resume with `mate train --resume RUN_DIR`", file=sys.stderr)
        return 130
