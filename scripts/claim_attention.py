"""The weight network's end state in every archived MATE run: does each exit get its own teacher?

    .venv/bin/python scripts/claim_attention.py [docs/results/claim/runs]

For each run of the ``mate`` objective with attention teachers (the uniform-teacher controls,
whose rows are equal by construction, are left out): the validation score (mean over exits at the selected
checkpoint), the largest weight any teacher gives the first two exits together at epoch
``EARLY_EPOCH`` (in the ramp-up, where the softmax saturates), the diagonal A[m, m] at the last epoch, the largest total-variation distance between
two teachers' rows there, and the first epoch from which the rows stay apart (more than
``SHARED_DISTANCE``); "shared" when they never do: every exit then learns from the same mixture.
"""
from __future__ import annotations

import json
import sys

import yaml
from pathlib import Path

from mate.engine.logger import read_metrics
from mate.experiments.run_report import SHARED_DISTANCE, teacher_distance, teachers_apart_from

ROOT = Path(__file__).resolve().parent.parent
EARLY_EPOCH = 5


def early_weight(records: list[dict], epoch: int = EARLY_EPOCH) -> float | None:
    """max over teachers m of A[m, 1] + A[m, 2] at ``epoch``; None when that epoch was not logged."""
    rows = next((r["train"]["attention"] for r in records if r.get("epoch") == epoch), None)
    return None if rows is None else max(row[0] + row[1] for row in rows)


def state(run: Path) -> dict | None:
    if not (run / "results.json").is_file() or not (run / "config.yaml").is_file():
        return None
    objective = yaml.safe_load((run / "config.yaml").read_text())["objective"]
    if objective["name"] != "mate" or objective.get("teacher", "attention") != "attention":
        return None
    records = [r for r in read_metrics(run) if "attention" in r.get("train", {})]
    last = records[-1]["train"]["attention"]
    apart = teachers_apart_from(records)
    return {"val": json.loads((run / "results.json").read_text())["val"]["mean_acc"], "early": early_weight(records),
            "diag": [row[m] for m, row in enumerate(last)], "distance": teacher_distance(last), "apart": apart}


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs/results/claim/runs"
    print(f"| run | val score | exits 1-2 at epoch {EARLY_EPOCH} (max over teachers) | A[m, m] at the last epoch "
          "| row distance | rows apart from epoch |")
    print("|---|---:|---:|---|---:|---:|")
    shared = total = 0
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        s = state(run)
        if s is None:
            continue
        total += 1
        shared += s["apart"] is None
        early = "—" if s["early"] is None else f"{s['early']:.2f}"
        print(f"| {run.name} | {s['val']:.2f} | {early} | {', '.join(f'{d:.2f}' for d in s['diag'])} | {s['distance']:.2f} | "
              f"{s['apart'] if s['apart'] is not None else 'never (shared)'} |")
    print(f"\n{shared} of {total} runs end with one shared teacher (rows within {SHARED_DISTANCE}).")


if __name__ == "__main__":
    main()
