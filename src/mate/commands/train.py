"""``mate train``: train a run (or resume one) and print its per-exit table."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..config import DEFAULT_CONFIG, config_to_yaml, load_config, resolve_config_path
from ..engine import config_from_checkpoint, train
from .common import is_main_process


def train_command(config: Optional[str] = None, overrides: Sequence[str] = (), resume: Optional[str] = None,
                  imports: Sequence[str] = (), print_config: bool = False) -> int:
    """Train from ``config`` (a YAML file or shipped name; default: the main job's) with overrides,
    or continue the run folder ``resume`` (its own config unless ``config`` is given). ``imports``:
    modules of your own, recorded in the run's config. ``print_config``: print the config that
    would train, as YAML, and stop there."""
    if resume:
        run_dir = Path(resume)
        run_dir = run_dir.parent if run_dir.suffix == ".pt" else run_dir
        if config:
            cfg = load_config(config, overrides, imports)
        else:
            cfg = config_from_checkpoint(run_dir / "last.pt", overrides, imports)
        if print_config:
            print(config_to_yaml(cfg), end="")
            return 0
        results = train(cfg, run_dir=run_dir, resume=True, log=print)
    else:
        path = config or resolve_config_path(DEFAULT_CONFIG)
        cfg = load_config(path, overrides, imports)
        if print_config:
            print(config_to_yaml(cfg), end="")
            return 0
        if is_main_process():
            print(f"config: {path}")
        results = train(cfg, log=print)
    if is_main_process():
        print()
        print(f"run: {results['run_dir']}  (best epoch {results['best_epoch']} by validation "
              f"'{results['select']}' accuracy; training {results['train_time_s']:.0f}s)")
        print(results["table"])
    return 0
