"""Does today's code train the archived claim runs as they were trained? Step 5 trains seeds 3-4
with the code of its day and takes seeds 0-2 from the archive, trained earlier; this check retrains
the first epochs of archived runs from their own config.yaml, in a scratch folder, and compares
every number their metrics.jsonl logged (training losses, per-exit accuracies, attention, learning
rate, and the validation record of an epoch that validated) and their validation split.

    .venv/bin/python scripts/claim_reproduce.py                    # seed 0 of every step-3 method, 4 epochs
    .venv/bin/python scripts/claim_reproduce.py --names beed_a1.12 --seed 1 --epochs 8

Runs train with one intra-op thread, as `mate compare --workers 2` trained them (another thread
count may change the float sums). Prints one line per run, the largest absolute difference and
where it is; exit code 1 if any number differs.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from claim_select import RUNS, STEP3  # noqa: E402

SKIP = {"time"}  # wall-clock seconds: never the same twice


def flatten(value, prefix: str = "") -> dict[str, object]:
    """{'train.ce[2]': 1.97, ...}: every leaf of a logged record, by its path."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key not in SKIP:
                out.update(flatten(item, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(value, list):
        out = {}
        for i, item in enumerate(value):
            out.update(flatten(item, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def differences(archived: dict, replayed: dict) -> list[tuple[str, object, object]]:
    """(path, archived value, replayed value) of every leaf that differs or is in one record only."""
    a, b = flatten(archived), flatten(replayed)
    return [(key, a.get(key), b.get(key)) for key in sorted(set(a) | set(b)) if a.get(key) != b.get(key)]


def replay(archived: Path, epochs: int, scratch: Path, threads: int = 1) -> list[dict]:
    """The records of the first ``epochs`` epochs of ``archived``'s config, trained again in ``scratch``."""
    import torch

    from mate.config import Config, yaml_load
    from mate.engine.trainer import Trainer

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        config = Config.from_dict(yaml_load((archived / "config.yaml").read_text()))
        trainer = Trainer(config, run_dir=scratch / archived.name, log=lambda line: None)
        records, success = [], False
        try:
            for epoch in range(epochs):
                records.append(json.loads(json.dumps(trainer.run_epoch(epoch))))  # as metrics.jsonl holds it
            success = True
        finally:
            trainer.close(success)
    finally:
        torch.set_num_threads(before)
    return records


def check(archived: Path, epochs: int, threads: int = 1) -> tuple[int, list[tuple[str, object, object]]]:
    """(numbers compared, differences) between ``archived``'s first epochs and a replay of them."""
    logged = [json.loads(line) for line in (archived / "metrics.jsonl").read_text().splitlines() if line.strip()]
    if len(logged) < epochs:
        raise SystemExit(f"{archived.name}: the archive holds {len(logged)} epochs, fewer than --epochs {epochs}")
    with tempfile.TemporaryDirectory() as scratch:
        records = replay(archived, epochs, Path(scratch), threads)
        split_then = json.loads((archived / "split.json").read_text())
        split_now = json.loads((Path(scratch) / archived.name / "split.json").read_text())
    diffs = differences({"split": split_then, "epochs": logged[:epochs]}, {"split": split_now, "epochs": records})
    return len(flatten({"split": split_then, "epochs": logged[:epochs]})), diffs


def describe(name: str, compared: int, diffs: list[tuple[str, object, object]]) -> str:
    if not diffs:
        return f"{name}: identical ({compared} numbers)"
    numeric = [(abs(a - b), key) for key, a, b in diffs
               if isinstance(a, (int, float)) and isinstance(b, (int, float))]
    worst = f"; largest |difference| {max(numeric)[0]:.3g} at {max(numeric)[1]}" if numeric else ""
    key, a, b = diffs[0]
    return f"{name}: {len(diffs)} of {compared} numbers differ (first: {key}: {a!r} then, {b!r} now){worst}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--names", default=",".join(STEP3), help="archived settings, comma-separated "
                                                                  "(default: every step-3 method)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=4, help="epochs to retrain (4: the first validation)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--archive", type=Path, default=RUNS)
    args = parser.parse_args(argv)
    failed = 0
    for name in args.names.split(","):
        compared, diffs = check(args.archive / f"{name}-s{args.seed}", args.epochs, args.threads)
        print(describe(f"{name}-s{args.seed}", compared, diffs), flush=True)
        failed += bool(diffs)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
