"""fp32 against bf16 autocast, from archived runs: the rule of two studies.

    .venv/bin/python scripts/precision_rule.py [docs/results/claim/precision/runs]
    .venv/bin/python scripts/precision_rule.py docs/results/main_precision/runs --split test

Step 2 of docs/claim_protocol.md (runs ``method=M_amp=none|bf16-sS`` of a sweep; the rule reads
validation) and the main job's precision study of docs/benchmarks.md (runs ``M_fp32|bf16-sS`` of
a comparison; the rule reads test, ``--split test``). For CE and MATE and every exit (and the
ensemble): the accuracy of the selected checkpoint, mean and standard deviation over the seeds,
in float32 and in bf16 autocast. **Rule:** bf16 passes only if, for both methods and every exit,
|mean(bf16) - mean(fp32)| <= max(std(fp32), std(bf16)). The other split is printed for the record
and plays no part in the rule. Training times are printed as measured; they are a speed figure
only when the runs had the machine to themselves. Where the main job's half-time candidate
(``mate_bf16_e8``) has runs, its test means are checked against the main job's bar: last exit at
least 93.0 %, exit 1 at least 91.0 %.
"""
from __future__ import annotations

import json
import re
import statistics
from collections import defaultdict
from pathlib import Path

# A sweep's run names (step 2) and a comparison's variant names (the main job's study).
RUN_NAMES = [re.compile(r"method=(?P<method>ce|mate)_amp=(?P<amp>none|bf16)-s(?P<seed>\d+)$"),
             re.compile(r"(?P<method>ce|mate)_(?P<amp>fp32|bf16)-s(?P<seed>\d+)$")]
HALF_TIME = re.compile(r"mate_bf16_e8-s(?P<seed>\d+)$")
HALF_TIME_BAR = {"exit 1": 91.0, "last exit": 93.0}


def load(root: Path) -> dict:
    """{(method, "none" | "bf16"): {seed: results.json}}; the half-time candidate's runs under
    ("mate_bf16_e8", "bf16")."""
    runs: dict = defaultdict(dict)
    for path in sorted(root.glob("*/results.json")):
        for pattern in RUN_NAMES:
            match = pattern.match(path.parent.name)
            if match:
                amp = "none" if match["amp"] == "fp32" else match["amp"]
                runs[(match["method"], amp)][int(match["seed"])] = json.loads(path.read_text())
        match = HALF_TIME.match(path.parent.name)
        if match:
            runs[("mate_bf16_e8", "bf16")][int(match["seed"])] = json.loads(path.read_text())
    return runs


def half_time_check(runs: dict) -> list[str]:
    """The half-time candidate's test means against the main job's bar (lines to print)."""
    by_seed = runs.get(("mate_bf16_e8", "bf16"), {})
    if not by_seed:
        return []
    means = {"exit 1": statistics.fmean(r["test"]["exit_acc"][0] for r in by_seed.values()),
             "last exit": statistics.fmean(r["test"]["exit_acc"][-1] for r in by_seed.values())}
    lines = [f"half-time candidate mate_bf16_e8 ({len(by_seed)} seeds), test mean:"]
    for name, bar in HALF_TIME_BAR.items():
        lines.append(f"  {name}: {means[name]:.2f} (bar {bar:.1f}: {'met' if means[name] >= bar else 'NOT met'})")
    if len(by_seed) < 3:
        lines.append("  incomplete: fewer than 3 seeds")
    else:
        passed = all(means[n] >= b for n, b in HALF_TIME_BAR.items())
        lines.append("  verdict: " + ("passes the bar" if passed else "fails the bar"))
    return lines


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
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="?", default="docs/results/claim/precision/runs")
    parser.add_argument("--split", choices=["val", "test"], default="val", help="the split the rule reads")
    args = parser.parse_args()
    runs = load(Path(args.runs))
    other = "test" if args.split == "val" else "val"
    missing = [f"{m}/{a}" for m in ("ce", "mate") for a in ("none", "bf16") if len(runs.get((m, a), {})) < 3]
    if missing:
        print(f"incomplete: fewer than 3 finished seeds for {', '.join(missing)}")
    ruled, ok = table(runs, args.split, rule=True)
    print(f"{dict(val='Validation', test='Test')[args.split]} (the rule):\n")
    print(ruled)
    print(f"\n{dict(val='Validation', test='Test')[other]} (for the record, not used by the rule):\n")
    print(table(runs, other, rule=False)[0])
    print("\nTraining time per run (s), mean over seeds:")
    for (method, amp), by_seed in sorted(runs.items()):
        times = [r["train_time_s"] for r in by_seed.values()]
        print(f"  {method} {amp}: {statistics.fmean(times):.0f} ({len(times)} runs)")
    if not missing:
        print("\nrule: " + ("bf16 keeps every exit within the seed spread" if ok
                            else "bf16 moves an exit by more than the seed spread"))
    for line in half_time_check(runs):
        print(line)


if __name__ == "__main__":
    main()
