"""``mate sweep``: a grid over any config keys × seeds, trained by any launcher.

    mate sweep --config BASE --grid optim.lr=0.05,0.1 objective.primary_share=0.5,0.7,0.9 --seeds 3 --out DIR

A point is one combination of values (the Cartesian product of ``--grid``, or the named points of
a YAML file: ``{name: {key: value, ...}}`` or a list of such mappings). The pseudo-key ``method``
takes methods as ``mate compare`` does (objective names or variants), so ``mate compare`` is the
sweep over ``method``. Every point × seed is a run folder ``RUNS/<point>-s<seed>`` named from its
values; finished runs are skipped, interrupted ones resumed, failed ones retried by running the
command again. A run on disk (finished, or with a checkpoint to resume) is used only when the
config it records equals the requested one; otherwise the command stops, naming the differing
keys, before anything is trained. OUT gets ``sweep.csv`` (one row per point: its values, test accuracy per exit and
ensemble, mean ± std over seeds, validation score), ``runs.csv`` (one row per run), ``table.md``,
and for each numeric key a plot of accuracy against that key, one line per value of the other
keys, with the seed spread.
"""
from __future__ import annotations

import csv
import inspect
import itertools
import json
import re
import shutil
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml

from ..config import DEFAULT_CONFIG, DERIVED, Config, apply_overrides, read_yaml, resolve_config_path, with_imports, yaml_load
from ..engine.files import FolderLock
from ..engine.trainer import run_folder
from ..errors import ConfigError, MateError
from ..models import MODELS
from ..objectives import OBJECTIVES
from .launchers import LaunchOptions, RunTask, launch, run_folder_lock

ARCHIVED_FILES = ("results.json", "metrics.jsonl", "config.yaml", "split.json")


@dataclass
class Point:
    name: str
    values: dict  # key -> value, in grid order ("method" included when swept)
    configs: dict = field(default_factory=dict)  # seed -> Config


def parse_grid(items: Sequence[str]) -> dict:
    """``["optim.lr=0.05,0.1", "method=ce,mate"]`` -> {"optim.lr": [0.05, 0.1], "method": ["ce", "mate"]}."""
    grid: dict = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid entry '{item}' must look like section.key=v1,v2,...")
        key, text = item.split("=", 1)
        key = key.strip()
        if key != "method" and "." not in key:
            raise ConfigError(f"--grid key '{key}' must be section.key (e.g. optim.lr) or 'method'")
        if key in grid:
            raise ConfigError(f"--grid key '{key}' is given twice")
        grid[key] = [yaml_load(v) if v.strip() else "" for v in text.split(",")]
    return grid


def expand_grid(grid: dict) -> list[dict]:
    keys = list(grid)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def load_points(path: str | Path) -> list[tuple[Optional[str], dict]]:
    raw = yaml_load(Path(path).read_text())
    if isinstance(raw, dict):
        items = list(raw.items())
    elif isinstance(raw, list):
        items = [(None, p) for p in raw]
    else:
        raise ConfigError(f"points file {path} must be a mapping of named points or a list of points")
    for name, point in items:
        if not isinstance(point, dict) or not point:
            raise ConfigError(f"points file {path}: point {name or point!r} must be a non-empty mapping of keys")
    return items


def _format(value) -> str:
    """A value as YAML text that reads back as the same value (also as an override)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        text = repr(value)
        mantissa, _, exponent = text.partition("e")
        if exponent and "." not in mantissa:  # YAML 1.1 reads 1e+30 as a string, 1.0e+30 as a float
            text = f"{mantissa}.0e{exponent}"
        return text
    return json.dumps(value)


def point_name(values: dict) -> str:
    """A folder name from the point's values: the last part of each key, '=' and the value."""
    leaves = [k.split(".")[-1] for k in values]
    parts = []
    for (key, value), leaf in zip(values.items(), leaves):
        label = leaf if leaves.count(leaf) == 1 else key
        parts.append(f"{label}={_format(value)}")
    name = "_".join(parts) or "base"
    return re.sub(r"[^A-Za-z0-9_.=+-]", "-", name)


def base_config(config_path: Optional[str | Path], overrides: Sequence[str] = ()) -> dict:
    """The raw base config of a comparison or sweep: ``config_path`` (default: DEFAULT_CONFIG, the
    base of ``mate train``) with ``overrides`` applied."""
    return apply_overrides(read_yaml(config_path or DEFAULT_CONFIG), overrides)


def build_points(base: dict, value_sets: list[tuple[Optional[str], dict]], seeds: Sequence[int], runs_dir: Path,
                 variants_file: Optional[str | Path] = None) -> list[Point]:
    from .compare import load_method_specs, run_config

    points = []
    for name, values in value_sets:
        values = dict(values)
        name = name or point_name(values)
        overrides = [f"{k}={_format(v)}" for k, v in values.items() if k != "method"]
        raw = apply_overrides(base, overrides)
        point = Point(name, values)
        for seed in seeds:
            if "method" in values:
                spec = load_method_specs([str(values["method"])], variants_file)[0]
                cfg = run_config(raw, spec, seed, runs_dir)
                cfg.run.name = f"{name}-s{seed}"
            else:
                d = json.loads(json.dumps(raw))
                d.setdefault("run", {})
                d["run"] = {**d["run"], "seed": seed, "out_dir": str(runs_dir), "name": f"{name}-s{seed}"}
                cfg = Config.from_dict(d)
            point.configs[seed] = cfg
        points.append(point)
    if len({p.name for p in points}) != len(points):
        raise ConfigError("two points of the sweep have the same name")
    return points


def copy_finished_run(src: Path, dest: Path) -> None:
    """Copy a finished run's small files (never its checkpoints) from ``src`` to ``dest``: to the
    archive after training, and back from it in place of training; nothing if ``src`` is unfinished."""
    if not (src / "results.json").exists():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for name in ARCHIVED_FILES:
        if (src / name).exists():
            shutil.copyfile(src / name, dest / name)


# Keys that cannot change what a run computes, so a recorded run is reused whatever they are: where
# its folder lies (run.out_dir, run.name: the folder it is found in), the progress bar, the
# trackers that report it besides metrics.jsonl, and the number of decoding processes (every image
# is decoded and augmented from its own seed, whichever process reads it).
UNCOMPARED = ("run.out_dir", "run.name", "run.progress", "run.loggers", "run.tensorboard", "run.log_every",
              "run.project", "run.mlflow_uri", "data.num_workers")
_UNSET = "(unset)"


def _plain(value):
    """Tuples as lists, so that a signature's default equals the same value read from YAML."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def resolved_values(config: Config) -> dict:
    """Every ``section.key`` of a config with the value it trains with: the model's and the objective's
    defaults filled in from their signatures, as they are when the run is built."""
    raw = config.to_dict()
    for section, registry in (("model", MODELS), ("objective", OBJECTIVES)):
        for key, param in registry.options(raw[section]["name"]).items():
            if key not in DERIVED[section] and param.default is not inspect.Parameter.empty:
                raw[section].setdefault(key, param.default)
    return {f"{section}.{key}": _plain(value) for section, values in raw.items() for key, value in values.items()}


def config_differences(recorded: dict, requested: Config) -> list[tuple[str, object, object]]:
    """(key, recorded value, requested value) for every key whose values differ, UNCOMPARED left out.
    Both configs are read through the config system, so that defaults count as given. When the
    model or objective names differ, the name alone is reported (their options differ with it).
    Raises ConfigError when this version cannot read the recorded config."""
    a, b = resolved_values(Config.from_dict(recorded)), resolved_values(requested)
    renamed = [s for s in ("model", "objective") if a[f"{s}.name"] != b[f"{s}.name"]]
    diffs = []
    for key in dict.fromkeys([*a, *b]):
        if key in UNCOMPARED or (key.split(".")[0] in renamed and not key.endswith(".name")):
            continue
        if a.get(key, _UNSET) != b.get(key, _UNSET):
            diffs.append((key, a.get(key, _UNSET), b.get(key, _UNSET)))
    return diffs


def recorded_config(folder: Path) -> Optional[dict]:
    """The config a run on disk was trained with: results.json's when it is finished (a resume's
    overrides included), config.yaml's while it has a checkpoint to resume; None when there is no
    such run."""
    try:
        if (folder / "results.json").exists():
            results = json.loads((folder / "results.json").read_text())
            if isinstance(results, dict) and isinstance(results.get("config"), dict):
                return results["config"]
            if (folder / "config.yaml").exists():
                return yaml_load((folder / "config.yaml").read_text())
            raise ValueError("no config recorded")
        if (folder / "last.pt").exists() and (folder / "config.yaml").exists():
            return yaml_load((folder / "config.yaml").read_text())
    except (ValueError, yaml.YAMLError) as exc:
        raise MateError(f"the run in {folder} cannot be checked against the requested config: its results.json "
                        f"or config.yaml is damaged ({exc}); delete {folder} to train it again") from None
    return None


def _and(items: list) -> str:
    items = [str(i) for i in items]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def check_recorded_configs(configs: dict, archive_dir: Optional[Path]) -> None:
    """Raise one MateError, before anything is restored or trained, when a run on disk (in its run
    folder, or else in the archive) was trained with another config than the one requested:
    reusing or resuming it would mix two configs under one name. Retraining it takes deleting
    its folders, which the error names."""
    stale = []
    for cfg in configs.values():
        copies = [run_folder(cfg)] + ([archive_dir / cfg.run.name] if archive_dir is not None else [])
        found = []  # (folder, differences or None when unreadable) of every copy that records a run
        for folder in copies:
            recorded = recorded_config(folder)
            if recorded is None:
                continue
            try:
                found.append((folder, config_differences(recorded, cfg)))
            except ConfigError as exc:
                found.append((folder, f"its recorded config cannot be read by this version ({exc})"))
        if found and found[0][1]:  # the copy a run would use (its run folder's first) differs
            delete = [folder for folder, diffs in found if diffs]
            stale.append((found[0][0], found[0][1], delete))
    if not stale:
        return
    what = [f"{folder}: " + (diffs if isinstance(diffs, str) else
                             ", ".join(f"{k}={_format(old)} (requested {_format(new)})" for k, old, new in diffs))
            for folder, diffs, _ in stale]
    one = len(stale) == 1
    raise MateError(
        f"{len(stale)} run{'' if one else 's'} {'was' if one else 'were'} trained with another config than "
        f"requested: {'; '.join(what)}. To train {'it' if one else 'them'} with the requested config, delete "
        f"{_and([f for _, _, delete in stale for f in delete])}; to reuse {'it' if one else 'them'}, request the "
        f"config {'it was' if one else 'they were'} trained with")


PLAN_ACTIONS = {"done": "finished in its run folder", "archived": "restored from the archive, not trained",
                "busy": "being trained by another process now", "resume": "resumed from its last.pt",
                "train": "trained from the start"}


def plan_runs(configs: dict, archive_dir: Optional[str | Path] = None) -> dict:
    """What train_all would do with each {key: Config}, doing none of it: {key: "done" | "archived" |
    "busy" | "resume" | "train"} (PLAN_ACTIONS says what each means; a busy run's folder is locked by a
    live process, so training it now would stop with that process named). Checks the recorded
    configs first, as train_all does, so a run on disk trained with another config is found before a
    grid starts."""
    archive = Path(archive_dir).expanduser() if archive_dir is not None else None
    check_recorded_configs(configs, archive)
    plan = {}
    for key, cfg in configs.items():
        run_dir = run_folder(cfg)
        if (run_dir / "results.json").exists():
            plan[key] = "done"
        elif archive is not None and (archive / cfg.run.name / "results.json").exists():
            plan[key] = "archived"
        elif run_dir.is_dir() and run_folder_lock(run_dir).holder() is not None:
            plan[key] = "busy"
        else:
            plan[key] = "resume" if (run_dir / "last.pt").exists() else "train"
    return plan


def format_plan(plan: dict) -> str:
    """A line per run and a count per action, for --dry-run."""
    lines = [f"[plan] {' '.join(map(str, key))}: {PLAN_ACTIONS[action]}" for key, action in plan.items()]
    counts = [f"{sum(a == action for a in plan.values())} {action}" for action in PLAN_ACTIONS]
    return "\n".join(lines + [f"{len(plan)} runs: {', '.join(counts)} (dry run: nothing trained or written)"])


def train_all(configs: dict, options: LaunchOptions, archive_dir: Optional[str | Path] = None,
              log: Callable[[str], None] = print) -> dict:
    """Train every {key: Config} not finished yet with the launcher; returns {key: results.json}.

    A run found in ``archive_dir`` is restored instead of trained; every finished run is archived.
    A run on disk whose recorded config differs from the requested one stops everything first
    (check_recorded_configs). Raises MateError naming each failed run (and its log) after all the
    others have finished.
    """
    archive = Path(archive_dir).expanduser() if archive_dir is not None else None
    check_recorded_configs(configs, archive)
    tasks = []
    for key, cfg in configs.items():
        run_dir = run_folder(cfg)
        if not (run_dir / "results.json").exists() and archive is not None:
            copy_finished_run(archive / cfg.run.name, run_dir)
        if (run_dir / "results.json").exists():
            log(f"[run] {' '.join(map(str, key))}: done already")
            continue
        tasks.append(RunTask(key, cfg.to_dict(), str(run_dir)))

    def archive_run(task: RunTask) -> None:
        if archive is not None:
            copy_finished_run(Path(task.run_dir), archive / Path(task.run_dir).name)

    failures = launch(tasks, options, log, on_finished=archive_run)
    if archive is not None:
        for cfg in configs.values():
            copy_finished_run(run_folder(cfg), archive / cfg.run.name)
    if failures:
        raise MateError(f"{len(failures)} of {len(configs)} runs failed (the others are finished; run the "
                        "same command again to retry them):\n"
                        + "\n".join(f"  {' '.join(map(str, k))}: {msg}" for k, msg in failures.items()))
    return {key: json.loads((run_folder(c) / "results.json").read_text()) for key, c in configs.items()}


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def summarise_points(points: list[Point], results: dict) -> list[dict]:
    rows = []
    for p in points:
        runs = [results[(p.name, s)] for s in p.configs]
        k = len(runs[0]["test"]["exit_acc"])
        rows.append({
            "point": p.name, "values": p.values, "seeds": len(runs),
            "exit_acc": [_mean_std([r["test"]["exit_acc"][i] for r in runs]) for i in range(k)],
            "mean_acc": _mean_std([r["test"]["mean_acc"] for r in runs]),
            "ensemble_acc": _mean_std([r["test"]["ensemble_acc"] for r in runs]),
            "val_mean_acc": _mean_std([r["val"]["mean_acc"] for r in runs]) if "val" in runs[0] else None,
        })
    return rows


def sweep(config_path: Optional[str | Path], grid: Optional[dict], seeds: int, out_dir: str | Path,
          points_file: Optional[str | Path] = None, overrides: Sequence[str] = (),
          variants_file: Optional[str | Path] = None, runs_dir: Optional[str | Path] = None,
          archive_dir: Optional[str | Path] = None, options: Optional[LaunchOptions] = None,
          log: Callable[[str], None] = print, imports: Sequence[str] = ()) -> list[dict]:
    """``imports``: modules of your own (objectives, models, datasets), added to the base config's."""
    options = options or LaunchOptions()
    out_dir = Path(out_dir).expanduser()
    runs_dir = runs_folder(out_dir, runs_dir)
    points, configs = sweep_configs(config_path, grid, seeds, out_dir, points_file, overrides, variants_file, runs_dir,
                                    imports)
    out_dir.mkdir(parents=True, exist_ok=True)
    with output_folder_lock(out_dir):
        (out_dir / "sweep.json").write_text(json.dumps(
            {"config": str(config_path or DEFAULT_CONFIG), "overrides": list(overrides), "grid": grid,
             "points_file": str(points_file), "points": [{"name": p.name, "values": p.values} for p in points],
             "seeds": seeds, "runs_dir": str(runs_dir)}, indent=2, default=str))
        results = train_all(configs, options, archive_dir, log)
        rows = summarise_points(points, results)
        write_sweep_outputs(out_dir, rows, results)
    return rows


def runs_folder(out_dir: str | Path, runs_dir: Optional[str | Path] = None) -> Path:
    """Where a comparison's or sweep's runs go: ``runs_dir``, by default OUT/runs."""
    return Path(runs_dir).expanduser() if runs_dir else Path(out_dir).expanduser() / "runs"


def sweep_configs(config_path: Optional[str | Path], grid: Optional[dict], seeds: int, out_dir: str | Path,
                  points_file: Optional[str | Path] = None, overrides: Sequence[str] = (),
                  variants_file: Optional[str | Path] = None, runs_dir: Optional[str | Path] = None,
                  imports: Sequence[str] = ()) -> tuple[list[Point], dict]:
    """A sweep's points and its {(point, seed): Config}, runs in ``runs_dir`` (default OUT/runs)."""
    if bool(grid) == bool(points_file):
        raise ConfigError("give the points either as --grid KEY=V1,V2 ... or as --points FILE (one of the two)")
    if seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {seeds}")
    runs_dir = runs_folder(out_dir, runs_dir)
    base = with_imports(base_config(config_path, overrides), imports)
    value_sets = [(None, v) for v in expand_grid(grid)] if grid else load_points(resolve_config_path(points_file))
    points = build_points(base, value_sets, range(seeds), runs_dir, variants_file)
    return points, {(p.name, s): cfg for p in points for s, cfg in p.configs.items()}


def output_folder_lock(out_dir: Path) -> FolderLock:
    """The hold of one comparison or sweep on its output folder (each run folder has its own)."""
    return FolderLock(out_dir, "the output folder", "wait for it to end, or write elsewhere with --out")


def write_sweep_outputs(out_dir: Path, rows: list[dict], results: dict) -> None:
    # every key any point sets, in order of appearance; a point of a points file that leaves a key
    # unset keeps the config's value there, shown as an empty cell
    keys = list(dict.fromkeys(key for r in rows for key in r["values"]))

    def cell(r: dict, key: str) -> str:
        return _format(r["values"][key]) if key in r["values"] else ""

    k = len(rows[0]["exit_acc"])
    with open(out_dir / "sweep.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", *keys, *[f"exit{i + 1}_{s}" for i in range(k) for s in ("mean", "std")],
                    "mean_mean", "mean_std", "ensemble_mean", "ensemble_std", "val_mean", "val_std", "seeds"])
        for r in rows:
            val = r["val_mean_acc"] or ("", "")
            w.writerow([r["point"], *[cell(r, key) for key in keys],
                        *[f"{v:.4f}" for ms in r["exit_acc"] for v in ms],
                        *[f"{v:.4f}" for v in r["mean_acc"]], *[f"{v:.4f}" for v in r["ensemble_acc"]],
                        *[f"{v:.4f}" if v != "" else "" for v in val], r["seeds"]])
    with open(out_dir / "runs.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["point", "seed", "best_epoch", *[f"exit{i + 1}" for i in range(k)], "ensemble", "val_mean"])
        for (name, seed), r in results.items():
            w.writerow([name, seed, r["best_epoch"], *[f"{a:.2f}" for a in r["test"]["exit_acc"]],
                        f"{r['test']['ensemble_acc']:.2f}", f"{r['val']['mean_acc']:.2f}" if "val" in r else ""])
    head = ["point", *keys] + [f"exit {i + 1}" for i in range(k)] + ["ensemble", "val mean"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---|" * len(keys) + "---:|" * (k + 2)]
    for r in rows:
        cells = [f"{m:.2f} ± {s:.2f}" for m, s in r["exit_acc"]]
        val = f"{r['val_mean_acc'][0]:.2f} ± {r['val_mean_acc'][1]:.2f}" if r["val_mean_acc"] else ""
        lines.append(f"| {r['point']} | " + " | ".join(cell(r, key) for key in keys) + " | "
                     + " | ".join(cells) + f" | {r['ensemble_acc'][0]:.2f} ± {r['ensemble_acc'][1]:.2f} | {val} |")
    (out_dir / "table.md").write_text(
        f"Test top-1 accuracy (%), mean ± std over {rows[0]['seeds']} seed(s); checkpoints selected on the "
        "validation split; 'val mean' is the validation mean over exits (the selection score).\n\n"
        + "\n".join(lines) + "\n")
    from .plots import plot_sweep_key

    for key in keys:
        if all(isinstance(r["values"].get(key), (int, float)) and not isinstance(r["values"][key], bool)
               for r in rows):
            if len({r["values"][key] for r in rows}) > 1:
                plot_sweep_key(rows, key, out_dir / f"sweep_{re.sub(r'[^A-Za-z0-9_]', '_', key)}.png")
