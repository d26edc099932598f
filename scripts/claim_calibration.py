"""Step 1 of docs/claim_protocol.md: the calibration table and the regime rule, from the archived runs.

    .venv/bin/python scripts/claim_calibration.py [docs/results/claim/calibration]

For every candidate folder (n<k>k_e<E>/runs/ce-s<seed>/): the last exit's training accuracy over
the last epoch (fit), the selected checkpoint's validation accuracy per exit and of the ensemble,
and the ensemble gap (ensemble minus last exit, validation); means over seeds. Test accuracy is not
read. Prints a Markdown table and the candidates that qualify (fit >= 99.0 and gap >= 0).
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path


def candidate_rows(root: Path) -> list[dict]:
    rows = []
    for folder in sorted(root.iterdir(), key=lambda p: int(p.name[1:].split("k")[0]) if p.name[1:2].isdigit() else 0):
        runs = sorted((folder / "runs").glob("*/results.json"))
        if not runs:
            continue
        fit, gap, val, ens, epochs = [], [], [], [], []
        for path in runs:
            result = json.loads(path.read_text())
            records = [json.loads(line) for line in (path.parent / "metrics.jsonl").read_text().splitlines()]
            fit.append(records[-1]["train"]["exit_acc"][-1])
            val.append(result["val"]["exit_acc"])
            ens.append(result["val"]["ensemble_acc"])
            gap.append(result["val"]["ensemble_acc"] - result["val"]["exit_acc"][-1])
            epochs.append(result["best_epoch"])
        cfg = json.loads(runs[0].read_text())["config"]
        rows.append({
            "name": folder.name, "images": cfg["data"]["train_subset"], "epochs": cfg["optim"]["epochs"],
            "seeds": len(runs), "fit": statistics.fmean(fit), "gap": statistics.fmean(gap),
            "gaps": gap, "val": [statistics.fmean(v[i] for v in val) for i in range(len(val[0]))],
            "ensemble": statistics.fmean(ens), "best_epochs": epochs,
        })
    return rows


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "docs/results/claim/calibration")
    rows = candidate_rows(root)
    k = len(rows[0]["val"])
    print("| candidate | images × epochs | seeds | fit: last exit train acc (%) | "
          + " | ".join(f"val exit {i + 1}" for i in range(k)) + " | val ensemble | ensemble gap (per seed) | qualifies |")
    print("|---|---|---:|---:|" + "---:|" * k + "---:|---|---|")
    for r in rows:
        ok = r["fit"] >= 99.0 and r["gap"] >= 0
        gaps = ", ".join(f"{g:+.2f}" for g in r["gaps"])
        print(f"| `{r['name']}` | {r['images']:,} × {r['epochs']} | {r['seeds']} | {r['fit']:.2f} | "
              + " | ".join(f"{v:.2f}" for v in r["val"]) + f" | {r['ensemble']:.2f} | {r['gap']:+.2f} ({gaps}) | "
              + ("yes" if ok else "no") + " |")
    qualifying = [r for r in rows if r["fit"] >= 99.0 and r["gap"] >= 0]
    if qualifying:
        chosen = max(qualifying, key=lambda r: r["images"])
        print(f"\nchosen by the rule: {chosen['name']} (the qualifying candidate with the most training images)")
    else:
        best = max(rows, key=lambda r: r["gap"])
        print(f"\nno candidate qualifies; the largest ensemble gap: {best['name']} ({best['gap']:+.2f})")


if __name__ == "__main__":
    main()
