"""Step 2 of docs/claim_protocol.md: fp32 against bf16 autocast, from the archived runs.

    .venv/bin/python scripts/claim_precision.py [docs/results/claim/precision/runs]

For CE and MATE and every exit (and the ensemble): the validation accuracy of the selected
checkpoint, mean and standard deviation over the seeds, in float32 (``run.amp=none``) and in
bf16 autocast. **Rule:** bf16 is used for the grid only if, for both methods and every exit,
|mean(bf16) - mean(fp32)| <= max(std(fp32), std(bf16)). Test accuracy is printed for the record
(second table) and plays no part in the rule. Training times are printed as measured; they are a
speed figure only when the runs had the machine to themselves.
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from collections import defaultdict
from pathlib import Path

RUN = re.compile(r"method=(?P<method>\w+)_amp=(?P<amp>\w+)-s(?P<seed>\d+)$")


def load(root: Path) -> dict:
    """{(method, amp): {seed: results.json}}."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("*/results.json")):
        match = RUN.match(path.parent.name)
        if match:
            runs[(match["method"], match["amp"])][int(match["seed"])] = json.loads(path.read_text())
    return runs


def accuracies(result: dict, split: str) -> list[float]:
    return [*result[split]["exit_acc"], result[split]["ensemble_acc"]]


def spread(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def compare(runs: dict, method: str, split: str) -> list[dict]:
    """One row per exit (and the ensemble): means, stds and the rule's verdict."""
    fp32, bf16 = runs[(method, "none")], runs[(method, "bf16")]
    seeds = sorted(set(fp32) & set(bf16))
    rows = []
    columns = len(accuracies(fp32[seeds[0]], split))
    for i in range(columns):
        a = spread([accuracies(fp32[s], split)[i] for s in seeds])
        b = spread([accuracies(bf16[s], split)[i] for s in seeds])
        paired = [accuracies(bf16[s], split)[i] - accuracies(fp32[s], split)[i] for s in seeds]
        rows.append({"exit": f"exit {i + 1}" if i < columns - 1 else "ensemble", "fp32": a, "bf16": b,
                     "diff": b[0] - a[0], "paired": paired, "within": abs(b[0] - a[0]) <= max(a[1], b[1])})
    return rows


def table(runs: dict, split: str, rule: bool) -> tuple[str, bool]:
    lines = [f"| method | exit | fp32 {split} (%) | bf16 {split} (%) | bf16 − fp32 | per seed |"
             + (" within max std |" if rule else ""),
             "|---|---|---:|---:|---:|---|" + ("---|" if rule else "")]
    ok = True
    for method in ("ce", "mate"):
        if not set(runs.get((method, "none"), {})) & set(runs.get((method, "bf16"), {})):
            continue  # no seed finished in both precisions yet
        for row in compare(runs, method, split):
            per_seed = ", ".join(f"{d:+.2f}" for d in row["paired"])
            line = (f"| {method} | {row['exit']} | {row['fp32'][0]:.2f} ± {row['fp32'][1]:.2f} | "
                    f"{row['bf16'][0]:.2f} ± {row['bf16'][1]:.2f} | {row['diff']:+.2f} | {per_seed} |")
            if rule:
                line += " yes |" if row["within"] else " **no** |"
                if row["exit"] != "ensemble":  # the rule is on the exits; the ensemble is shown
                    ok &= row["within"]
            lines.append(line)
    return "\n".join(lines), ok


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/claim/precision/runs")
    runs = load(root)
    missing = [f"{m}/{a}" for m in ("ce", "mate") for a in ("none", "bf16") if len(runs.get((m, a), {})) < 3]
    if missing:
        print(f"incomplete: fewer than 3 finished seeds for {', '.join(missing)}")
    val, ok = table(runs, "val", rule=True)
    print("Validation (the rule):\n")
    print(val)
    print("\nTest (for the record, not used by the rule):\n")
    print(table(runs, "test", rule=False)[0])
    print("\nTraining time per run (s), mean over seeds:")
    for (method, amp), by_seed in sorted(runs.items()):
        times = [r["train_time_s"] for r in by_seed.values()]
        print(f"  {method} {amp}: {statistics.fmean(times):.0f} ({len(times)} runs)")
    if not missing:
        print("\nrule: " + ("bf16 keeps every exit within the seed spread: the grid runs in bf16" if ok
                            else "bf16 moves an exit by more than the seed spread: the grid runs in fp32"))


if __name__ == "__main__":
    main()
