"""The weight network's end state in every archived MATE run: does each exit get its own teacher?

    .venv/bin/python scripts/claim_attention.py [docs/results/claim/runs]

For each run of the ``mate`` objective with attention teachers (the uniform-teacher controls,
whose rows are equal by construction, are left out): the validation score (mean over exits at the selected
checkpoint), the largest weight any teacher gives the first two exits together at epoch
``EARLY_EPOCH`` (in the ramp-up, where the softmax saturates), the diagonal A[m, m] at the last epoch, the largest total-variation distance between
two teachers' rows there, and the first epoch from which the rows stay apart (more than
``SHARED_DISTANCE``); "shared" when they never do: every exit then learns from the same mixture.

    .venv/bin/python scripts/claim_attention.py --signal [RUNS]   # (a KL that rounds below 0 shows as 0)

What each exit is pulled towards at the end of training, per setting (mean over its seeds, the
uniform controls included): the KL from its own teacher to it and the mean KL from the other
teachers, averaged over the last quarter of training, 30 of the claim regime's 120 epochs
(``run_report.distillation_signal``).
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

import yaml

from mate.engine.logger import read_metrics
from mate.experiments.run_report import SHARED_DISTANCE, distillation_signal, teacher_distance, teachers_apart_from

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


def signal_table(root: Path) -> str:
    """Markdown: per MATE setting (its run folders SETTING-sN), each exit's pull from its own teacher and
    the other teachers' mean pull, averaged over the seeds."""
    by_setting = defaultdict(list)
    for run in sorted(p for p in root.iterdir() if p.is_dir()):
        config = run / "config.yaml"
        if not (run / "results.json").is_file() or not config.is_file():
            continue
        if yaml.safe_load(config.read_text())["objective"]["name"] != "mate":
            continue
        by_setting[re.sub(r"-s\d+$", "", run.name)].append(distillation_signal(read_metrics(run)))
    k = len(next(iter(by_setting.values()))[0][0]) if by_setting else 0
    exits = " | ".join(f"exit {j + 1}" for j in range(k))
    lines = [f"| setting | seeds | own teacher: {exits} | other teachers (mean): {exits} |", "|---|---:|" + "---:|" * 2 * k]
    for setting, runs in by_setting.items():
        own = [statistics.fmean(r[0][j] for r in runs) for j in range(k)]
        others = [statistics.fmean(r[1][j] for r in runs) for j in range(k)]
        lines.append(f"| {setting} | {len(runs)} | " + " | ".join(f"{max(v, 0.0):.4f}" for v in own + others) + " |")
    return "\n".join(lines)


def main() -> None:
    args = [a for a in sys.argv[1:] if a != "--signal"]
    root = Path(args[0]) if args else ROOT / "docs/results/claim/runs"
    if "--signal" in sys.argv[1:]:
        print(signal_table(root))
        return
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
