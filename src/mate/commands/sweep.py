"""``mate sweep``: a grid over any config keys x seeds, through any launcher; the table, CSVs and plots."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..experiments.launchers import LaunchOptions
from ..experiments.sweep import format_plan, parse_grid, plan_runs, sweep, sweep_configs


def sweep_command(config: Optional[str], grid: Optional[Sequence[str]] = None, points: Optional[str] = None,
                  seeds: int = 3, out: str = "runs/sweep", overrides: Sequence[str] = (),
                  variants: Optional[str] = None, runs: Optional[str] = None, archive: Optional[str] = None,
                  imports: Sequence[str] = (), dry_run: bool = False, **launch) -> int:
    """``grid``: ["section.key=v1,v2", ...]; ``launch``: the options of LaunchOptions; ``dry_run``: print
    what each run would need, and do none of it."""
    if dry_run:
        _, configs = sweep_configs(config, parse_grid(grid) if grid else None, seeds, out, points, overrides, variants,
                                   runs, imports)
        print(format_plan(plan_runs(configs, archive)))
        return 0
    sweep(config, parse_grid(grid) if grid else None, seeds, out, points, overrides, variants, runs, archive,
          LaunchOptions(**launch), log=print, imports=imports)
    print((Path(out) / "table.md").read_text())
    print(f"written: {out}/table.md, sweep.csv, runs.csv and one sweep_<key>.png per numeric key")
    return 0
