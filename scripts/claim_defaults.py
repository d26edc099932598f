"""Step 3 of docs/claim_protocol.md: every method at its defaults, ranked by the selection score.

    .venv/bin/python scripts/claim_defaults.py [docs/results/claim/runs]

The selection score of a method is the validation mean over exits at the selected checkpoint
(``val.mean_acc`` in results.json), averaged over seeds 0, 1, 2. Prints one row per method (the
score per seed, its mean and std, how many seeds have finished) and the two strongest tunable
baselines: the distillation baselines with the best scores (controls and CE excluded: CE has no
KD weight to tune, and the controls are not baselines). Test accuracy is not read.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

METHODS = ("ce", "mate", "byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip", "mate_uniform", "ce_ge")
TUNABLE_BASELINES = ("byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip")
SEEDS = (0, 1, 2)


def scores(root: Path, method: str) -> dict[int, float]:
    out = {}
    for seed in SEEDS:
        path = root / f"{method}-s{seed}" / "results.json"
        if path.is_file():
            out[seed] = json.loads(path.read_text())["val"]["mean_acc"]
    return out


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/claim/runs")
    rows = {m: scores(root, m) for m in METHODS}
    print("| method | score seed 0 | seed 1 | seed 2 | mean ± std | seeds |")
    print("|---|---:|---:|---:|---:|---:|")
    ranked = sorted(METHODS, key=lambda m: -statistics.fmean(rows[m].values()) if rows[m] else 0.0)
    for m in ranked:
        by_seed = rows[m]
        cells = " | ".join(f"{by_seed[s]:.2f}" if s in by_seed else "—" for s in SEEDS)
        values = list(by_seed.values())
        mean = f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}" \
            if values else "—"
        print(f"| {m} | {cells} | {mean} | {len(values)} |")
    complete = [m for m in TUNABLE_BASELINES if len(rows[m]) == len(SEEDS)]
    if len(complete) < len(TUNABLE_BASELINES):
        print(f"\nincomplete: {', '.join(m for m in TUNABLE_BASELINES if m not in complete)} "
              "lack finished seeds; the two strongest baselines are not chosen yet")
        return
    best = sorted(complete, key=lambda m: -statistics.fmean(rows[m].values()))[:2]
    print(f"\nthe two strongest baselines (tuned in step 4): {', '.join(best)}")


if __name__ == "__main__":
    main()
