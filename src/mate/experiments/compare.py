"""``mate compare``: methods x seeds from one base config, under one harness.

Every run uses the same data, split, model, schedule and budget; only the objective section
(and the seed) differ. A method is a registered objective name (``ce``, ``byot``, ...) or a named
variant: an objective section in a YAML file (``configs/methods.yaml`` ships the OKDDip analogue
and MATE's ablation variants). Each run lives in ``RUNS/<method>-s<seed>`` (RUNS defaults to ``OUT/runs``); a finished run
(``results.json``) is skipped and an interrupted one resumed, so the command can be re-run until
everything is done. Model selection uses the validation split; the table reports test accuracy.
"""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml

from ..config import SHIPPED_CONFIGS, Config, apply_overrides, read_yaml
from ..engine import train
from ..errors import ConfigError
from ..objectives import OBJECTIVES

DEFAULT_VARIANTS = SHIPPED_CONFIGS / "methods.yaml"


@dataclass
class MethodSpec:
    name: str
    objective: dict  # a config 'objective' section


def load_method_specs(methods: Sequence[str], variants_file: Optional[str | Path] = None) -> list[MethodSpec]:
    variants: dict = {}
    for path in [DEFAULT_VARIANTS] + ([Path(variants_file)] if variants_file else []):
        if path.is_file():
            raw = yaml.safe_load(path.read_text()) or {}
            if not isinstance(raw, dict):
                raise ConfigError(f"variants file {path} must map method names to objective sections")
            variants.update(raw)
    specs = []
    for name in methods:
        if name in variants:
            section = variants[name]
            if not isinstance(section, dict) or "name" not in section:
                raise ConfigError(f"variant '{name}' must be an objective section with a 'name'")
            specs.append(MethodSpec(name, dict(section)))
        elif name in OBJECTIVES:
            specs.append(MethodSpec(name, {"name": name}))
        else:
            raise ConfigError(
                f"unknown method '{name}': not an objective ({', '.join(OBJECTIVES.names())}) nor a variant "
                f"({', '.join(sorted(variants)) or 'none'})"
            )
    if len({s.name for s in specs}) != len(specs):
        raise ConfigError("a method is listed twice")
    return specs


def run_config(base: dict, spec: MethodSpec, seed: int, runs_dir: Path) -> Config:
    raw = apply_overrides(base, [])
    # The base config's options for the same objective (e.g. MATE's ramp-up) carry over to variants.
    inherited = raw.get("objective") or {}
    raw["objective"] = {**(inherited if inherited.get("name", "mate") == spec.objective["name"] else {}),
                        **spec.objective}
    raw.setdefault("run", {})
    raw["run"] = {**raw["run"], "seed": seed, "out_dir": str(runs_dir), "name": f"{spec.name}-s{seed}"}
    return Config.from_dict(raw)


def compare(config_path: Optional[str | Path], methods: Sequence[str], seeds: int, out_dir: str | Path,
            overrides: Sequence[str] = (), variants_file: Optional[str | Path] = None,
            runs_dir: Optional[str | Path] = None, log: Callable[[str], None] = print) -> dict:
    """``runs_dir`` (default OUT/runs) may be shared by several comparisons: a run is trained once."""
    out_dir = Path(out_dir)
    runs_dir = Path(runs_dir) if runs_dir else out_dir / "runs"
    base = apply_overrides(read_yaml(config_path) if config_path else {}, overrides)
    specs = load_method_specs(methods, variants_file)
    configs = {(s.name, seed): run_config(base, s, seed, runs_dir) for s in specs for seed in range(seeds)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "compare.json").write_text(json.dumps(
        {"config": str(config_path), "overrides": list(overrides), "methods": [s.__dict__ for s in specs],
         "seeds": seeds, "runs_dir": str(runs_dir)}, indent=2))
    for (name, seed), cfg in configs.items():
        run_dir = Path(cfg.run.out_dir) / cfg.run.name
        if (run_dir / "results.json").exists():
            log(f"[compare] {name} seed {seed}: done already")
            continue
        resume = (run_dir / "last.pt").exists()
        log(f"[compare] {name} seed {seed}: {'resuming' if resume else 'training'} in {run_dir}")
        train(cfg, run_dir=run_dir, resume=resume, log=lambda s: None)
    results = {key: json.loads((Path(c.run.out_dir) / c.run.name / "results.json").read_text())
               for key, c in configs.items()}
    summary = summarise([s.name for s in specs], seeds, results)
    write_outputs(out_dir, summary, results)
    return summary


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise(methods: list[str], seeds: int, results: dict) -> dict:
    rows = {}
    for m in methods:
        runs = [results[(m, s)] for s in range(seeds)]
        k = len(runs[0]["test"]["exit_acc"])
        rows[m] = {
            "exit_acc": [_mean_std([r["test"]["exit_acc"][i] for r in runs]) for i in range(k)],
            "ensemble_acc": _mean_std([r["test"]["ensemble_acc"] for r in runs]),
            "val_mean_acc": _mean_std([r["val"]["mean_acc"] for r in runs]) if "val" in runs[0] else None,
            "train_time_s": _mean_std([r["train_time_s"] for r in runs]),
            "seeds": seeds,
        }
    return rows


def markdown_table(summary: dict) -> str:
    k = len(next(iter(summary.values()))["exit_acc"])
    head = ["method"] + [f"exit {i + 1}" for i in range(k)] + ["ensemble", "train time (s)"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    best = [max(row["exit_acc"][i][0] for row in summary.values()) for i in range(k)]
    for name, row in summary.items():
        cells = []
        for i, (mean, std) in enumerate(row["exit_acc"]):
            text = f"{mean:.2f} ± {std:.2f}"
            cells.append(f"**{text}**" if mean == best[i] and len(summary) > 1 else text)
        e, t = row["ensemble_acc"], row["train_time_s"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {e[0]:.2f} ± {e[1]:.2f} | {t[0]:.0f} |")
    return "\n".join(lines)


def write_outputs(out_dir: Path, summary: dict, results: dict) -> None:
    seeds = next(iter(summary.values()))["seeds"]
    table = markdown_table(summary)
    (out_dir / "table.md").write_text(
        f"Test top-1 accuracy (%), mean ± std over {seeds} seed(s); checkpoints selected on the validation "
        f"split. Bold: best mean per exit. Train time: mean wall-clock seconds of training per run.\n\n{table}\n")
    k = len(next(iter(summary.values()))["exit_acc"])
    with open(out_dir / "summary.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", *[f"exit{i + 1}_{s}" for i in range(k) for s in ("mean", "std")],
                    "ensemble_mean", "ensemble_std", "train_time_s_mean", "seeds"])
        for name, row in summary.items():
            w.writerow([name, *[f"{v:.4f}" for ms in row["exit_acc"] for v in ms],
                        f"{row['ensemble_acc'][0]:.4f}", f"{row['ensemble_acc'][1]:.4f}",
                        f"{row['train_time_s'][0]:.1f}", row["seeds"]])
    with open(out_dir / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "best_epoch", *[f"exit{i + 1}" for i in range(k)], "ensemble",
                    "val_mean", "train_time_s"])
        for (name, seed), r in results.items():
            w.writerow([name, seed, r["best_epoch"], *[f"{a:.2f}" for a in r["test"]["exit_acc"]],
                        f"{r['test']['ensemble_acc']:.2f}", f"{r['val']['mean_acc']:.2f}" if "val" in r else "",
                        f"{r['train_time_s']:.1f}"])
    from .plots import plot_exit_accuracy, plot_improvement

    plot_exit_accuracy(summary, out_dir / "per_exit_accuracy.png")
    if "ce" in summary and len(summary) > 1:
        plot_improvement(summary, "ce", out_dir / "improvement_over_ce.png")
