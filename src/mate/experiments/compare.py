"""``mate compare``: methods x seeds from one base config, under one harness.

Every run uses the same data, split, model, schedule and budget; only the objective section
(and the seed) differ. A method is a registered objective name (``ce``, ``byot``, ...) or a named
variant: an objective section in a YAML file (``configs/methods.yaml`` ships the OKDDip analogue
and MATE's ablation variants; a variant may also change other sections, in the long form
``{objective: {...}, model: {...}}``). Each run lives in ``RUNS/<method>-s<seed>`` (RUNS defaults
to ``OUT/runs``); a finished run (``results.json``) is skipped and an interrupted one resumed, so
the command can be re-run until everything is done; either only when the config it records is
the one requested (``sweep.check_recorded_configs``). Model selection uses the validation split;
the table reports test accuracy.
"""
from __future__ import annotations

import csv
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

from ..config import DEFAULT_CONFIG, SHIPPED_CONFIGS, Config, apply_overrides, resolve_config_path, with_imports, yaml_load
from ..errors import ConfigError
from ..objectives import OBJECTIVES
from .launchers import LaunchOptions
from .sweep import base_config, output_folder_lock, runs_folder, train_all

DEFAULT_VARIANTS = SHIPPED_CONFIGS / "methods.yaml"


@dataclass
class MethodSpec:
    name: str
    objective: dict  # a config 'objective' section
    sections: dict = field(default_factory=dict)  # other sections' keys this method changes (e.g. model)


def load_method_specs(methods: Sequence[str], variants_file: Optional[str | Path] = None) -> list[MethodSpec]:
    variants: dict = {}
    for path in [DEFAULT_VARIANTS] + ([resolve_config_path(variants_file)] if variants_file else []):
        if path.is_file():
            raw = yaml_load(path.read_text()) or {}
            if not isinstance(raw, dict):
                raise ConfigError(f"variants file {path} must map method names to objective sections")
            variants.update(raw)
    specs = []
    for name in methods:
        if name in variants:
            section = variants[name]
            if isinstance(section, dict) and isinstance(section.get("objective"), dict):
                # the long form: {objective: {...}, model: {...}, ...} changes other sections too
                others = {k: v for k, v in section.items() if k != "objective"}
                bad = sorted(set(others) - {"data", "model", "optim", "run"})
                if bad or not all(isinstance(v, dict) for v in others.values()):
                    raise ConfigError(f"variant '{name}': sections besides 'objective' must be mappings "
                                      f"among data, model, optim, run (got {', '.join(map(str, others))})")
                section, extra = section["objective"], others
            else:
                extra = {}
            if not isinstance(section, dict) or "name" not in section:
                raise ConfigError(f"variant '{name}' must be an objective section with a 'name'")
            specs.append(MethodSpec(name, dict(section), extra))
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
    for section, values in spec.sections.items():
        raw[section] = {**(raw.get(section) or {}), **values}
    raw.setdefault("run", {})
    raw["run"] = {**raw["run"], "seed": seed, "out_dir": str(runs_dir), "name": f"{spec.name}-s{seed}"}
    return Config.from_dict(raw)


def compare(config_path: Optional[str | Path], methods: Sequence[str], seeds: int, out_dir: str | Path,
            overrides: Sequence[str] = (), variants_file: Optional[str | Path] = None,
            runs_dir: Optional[str | Path] = None, log: Callable[[str], None] = print, workers: int = 1,
            archive_dir: Optional[str | Path] = None, options: Optional[LaunchOptions] = None,
            paired_against: Sequence[str] = (), imports: Sequence[str] = ()) -> dict:
    """``runs_dir`` (default OUT/runs) may be shared by several comparisons: a run is trained once.

    ``workers`` > 1 trains that many runs at a time in separate processes, each with one
    intra-op thread (results equal a sequential one-thread comparison's); ``options`` picks another
    launcher (Ray, Slurm). ``archive_dir`` keeps each finished run's small files (results.json,
    metrics.jsonl, config.yaml, split.json; no checkpoint) in ARCHIVE/<run name>/, and a run found
    there is not trained again: commit that folder and a comparison continues on a fresh machine.
    ``paired_against``: methods (besides CE, always used when present) that every other method is
    compared with seed by seed, in OUT/paired_vs_<method>.md. ``imports``: modules of your own
    (objectives, models, datasets), added to the base config's ``imports``.
    """
    options = options or LaunchOptions(workers=workers)
    out_dir = Path(out_dir).expanduser()
    runs_dir = runs_folder(out_dir, runs_dir)
    specs, configs = compare_configs(config_path, methods, seeds, runs_dir, overrides, variants_file, imports)
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_folder_lock(out_dir):
        (out_dir / "compare.json").write_text(json.dumps(
            {"config": str(config_path or DEFAULT_CONFIG), "overrides": list(overrides), "methods": [s.__dict__ for s in specs],
             "seeds": seeds, "runs_dir": str(runs_dir)}, indent=2))
        results = train_all(configs, options, archive_dir, log)
        summary = summarise([s.name for s in specs], seeds, results)
        write_outputs(out_dir, summary, results, paired_against)
    return summary


def compare_configs(config_path: Optional[str | Path], methods: Sequence[str], seeds: int, runs_dir: Path,
                    overrides: Sequence[str] = (), variants_file: Optional[str | Path] = None,
                    imports: Sequence[str] = ()) -> tuple[list[MethodSpec], dict]:
    """A comparison's methods and its {(method, seed): Config}, runs in ``runs_dir``."""
    # imported first: a method may be an objective that one of them registers
    base = with_imports(base_config(config_path, overrides), imports)
    specs = load_method_specs(methods, variants_file)
    return specs, {(s.name, seed): run_config(base, s, seed, runs_dir) for s in specs for seed in range(seeds)}


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


def paired_stats(differences: list[float]) -> tuple[float, float, int, int]:
    """Per-seed paired differences summarised: (mean, std, seeds above zero, seeds below zero)."""
    mean, std = _mean_std(differences)
    return mean, std, sum(v > 0 for v in differences), sum(v < 0 for v in differences)


def paired_differences(results: dict, method: str, reference: str, seeds: int, split: str = "test") -> dict:
    """Per-seed paired differences method − reference (same seed: same data order and init), per exit
    and for the ensemble: {"exit": [(mean, std, n_positive, n_negative)], "ensemble": (...), "n": seeds}."""
    stats = paired_stats
    runs = [(results[(method, s)][split], results[(reference, s)][split]) for s in range(seeds)]
    k = len(runs[0][0]["exit_acc"])
    return {"exit": [stats([a["exit_acc"][i] - b["exit_acc"][i] for a, b in runs]) for i in range(k)],
            "ensemble": stats([a["ensemble_acc"] - b["ensemble_acc"] for a, b in runs]), "n": seeds}


def paired_table(results: dict, methods: list[str], reference: str, seeds: int, split: str = "test") -> str:
    """Markdown: each method minus ``reference``, per exit: mean ± std of the per-seed differences, and
    how many seeds are above / below zero."""
    k = len(results[(reference, 0)][split]["exit_acc"])
    head = ["method"] + [f"exit {i + 1}" for i in range(k)] + ["ensemble"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for m in methods:
        if m == reference:
            continue
        d = paired_differences(results, m, reference, seeds, split)
        cells = [f"{mean:+.2f} ± {std:.2f} ({up}↑ {down}↓)" for mean, std, up, down in d["exit"] + [d["ensemble"]]]
        lines.append(f"| {m} − {reference} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


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


def write_outputs(out_dir: Path, summary: dict, results: dict, paired_against: Sequence[str] = ()) -> None:
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
    methods = list(summary)
    for reference in dict.fromkeys((["ce"] if "ce" in summary else []) + list(paired_against)):
        if reference not in summary:
            raise ConfigError(f"--paired-against {reference}: not one of the compared methods")
        if len(summary) < 2:
            continue
        (out_dir / f"paired_vs_{reference}.md").write_text(
            f"Paired per-seed differences to {reference} on test (points), mean ± std over {seeds} seed(s), and "
            f"how many seeds are above (↑) and below (↓) {reference}. Seed s gives every method the same initial "
            "network and data order.\n\n" + paired_table(results, methods, reference, seeds) + "\n")
    if "ce" in summary and len(summary) > 1:
        paired = {m: paired_differences(results, m, "ce", seeds) for m in methods if m != "ce"}
        plot_improvement(summary, "ce", out_dir / "improvement_over_ce.png", paired)
