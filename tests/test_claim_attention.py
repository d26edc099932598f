"""scripts/claim_attention.py: which archived MATE runs end with one shared teacher."""
import json
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def run_folder(root: Path, name: str, objective: dict, rows_by_epoch: list, val: float) -> None:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump({"objective": objective}))
    (folder / "results.json").write_text(json.dumps({"val": {"mean_acc": val}}))
    (folder / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e + 1, "train": {"attention": a}}) + "\n" for e, a in enumerate(rows_by_epoch)))


def test_shared_and_separate_teachers_over_an_archive(tmp_path):
    shared = [[0.0, 0.4, 0.6]] * 3
    apart = [[0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.02, 0.04, 0.94]]
    run_folder(tmp_path, "mate-s0", {"name": "mate"}, [shared, apart, shared, apart, apart], 88.5)
    run_folder(tmp_path, "mate_mix-s1", {"name": "mate", "kd_mix": 0.5}, [shared] * 4, 87.6)
    # left out: the uniform control (equal rows by construction) and other objectives
    run_folder(tmp_path, "mate_uniform-s0", {"name": "mate", "teacher": "uniform"}, [[[1 / 3] * 3] * 3], 88.0)
    run_folder(tmp_path, "byot-s0", {"name": "byot"}, [apart], 88.0)
    out = subprocess.run([sys.executable, str(ROOT / "scripts/claim_attention.py"), str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    # epoch 5: the first two exits get 0.6 + 0.2 (teacher 1 of `apart`) and 0.0 + 0.4 (`shared`); mate_mix-s1
    # has no epoch 5
    assert out[2:] == ["| mate-s0 | 88.50 | 0.80 | 0.60, 0.70, 0.94 | 0.74 | 4 |",
                       "| mate_mix-s1 | 87.60 | — | 0.00, 0.40, 0.60 | 0.00 | never (shared) |",
                       "", "1 of 2 runs end with one shared teacher (rows within 0.05)."]
