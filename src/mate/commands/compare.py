"""``mate compare``: methods x seeds under one harness; the table, CSVs and plots."""
from __future__ import annotations

from typing import Optional, Sequence

from ..experiments import compare
from ..experiments.compare import markdown_table


def compare_command(config: Optional[str], methods: Sequence[str], seeds: int = 3, out: str = "runs/compare",
                    overrides: Sequence[str] = (), variants: Optional[str] = None, runs: Optional[str] = None,
                    workers: int = 1, archive: Optional[str] = None) -> int:
    summary = compare(config, methods, seeds, out, overrides, variants, runs, log=print, workers=workers,
                      archive_dir=archive)
    print(markdown_table(summary))
    print(f"\nwritten: {out}/table.md, summary.csv, runs.csv, per_exit_accuracy.png"
          + (", improvement_over_ce.png" if "ce" in summary and len(summary) > 1 else ""))
    return 0
