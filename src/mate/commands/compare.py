"""``mate compare``: methods x seeds under one harness; the table, CSVs and plots."""
from __future__ import annotations

from typing import Optional, Sequence

from ..experiments import compare
from ..experiments.compare import compare_configs, markdown_table
from ..experiments.launchers import LaunchOptions
from ..experiments.sweep import format_plan, plan_runs, runs_folder


def compare_command(config: Optional[str], methods: Sequence[str], seeds: int = 3, out: str = "runs/compare",
                    overrides: Sequence[str] = (), variants: Optional[str] = None, runs: Optional[str] = None,
                    archive: Optional[str] = None, paired_against: Sequence[str] = (), imports: Sequence[str] = (),
                    dry_run: bool = False, **launch) -> int:
    """``launch``: the options of mate.experiments.launchers.LaunchOptions (launcher, workers, ...);
    ``dry_run``: print what each run would need, and do none of it."""
    if dry_run:
        _, configs = compare_configs(config, methods, seeds, runs_folder(out, runs), overrides, variants, imports)
        print(format_plan(plan_runs(configs, archive)))
        return 0
    summary = compare(config, methods, seeds, out, overrides, variants, runs, log=print, archive_dir=archive,
                      options=LaunchOptions(**launch), paired_against=paired_against, imports=imports)
    print(markdown_table(summary))
    print(f"\nwritten: {out}/table.md, summary.csv, runs.csv, per_exit_accuracy.png"
          + (", improvement_over_ce.png" if "ce" in summary and len(summary) > 1 else "")
          + "".join(f", paired_vs_{m}.md" for m in dict.fromkeys((["ce"] if "ce" in summary else [])
                                                                 + list(paired_against)) if len(summary) > 1))
    return 0
