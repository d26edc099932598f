"""``mate report``: a run folder rendered as Markdown with curves and learning-gap plots."""
from __future__ import annotations

from ..experiments import render_report


def report_command(run_dir: str) -> int:
    print(f"written: {render_report(run_dir)}")
    return 0
