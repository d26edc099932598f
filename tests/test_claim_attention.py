"""scripts/claim_attention.py: which archived MATE runs end with one shared teacher."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
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


def test_the_distillation_signal_per_exit_from_own_and_other_teachers(tmp_path):
    from mate.experiments.run_report import distillation_signal

    # two exits; KL[m][k] from teacher m to exit k. Epoch 1 falls outside the last 2 epochs.
    kls = [[[9.0, 9.0], [9.0, 9.0]], [[0.2, 0.5], [0.1, 0.0]], [[0.4, 0.7], [0.3, 0.02]]]
    records = [{"epoch": e + 1, "train": {"teacher_student_kl": kl}} for e, kl in enumerate(kls)]
    own, others = distillation_signal(records, last=2)
    assert own == pytest.approx([0.3, 0.01]) and others == pytest.approx([0.2, 0.6])
    from mate.errors import MateError

    with pytest.raises(MateError, match="not a MATE run"):
        distillation_signal([{"epoch": 1, "train": {"ce": [0.5, 0.4]}}])
    for seed, shift in ((0, 0.0), (1, 0.1)):
        folder = tmp_path / f"mate-s{seed}"
        folder.mkdir()
        (folder / "config.yaml").write_text(yaml.safe_dump({"objective": {"name": "mate"}}))
        (folder / "results.json").write_text(json.dumps({"val": {"mean_acc": 88.0}}))
        (folder / "metrics.jsonl").write_text("".join(json.dumps(
            {"epoch": 1, "train": {"teacher_student_kl": [[0.1 + shift, 0.2], [0.3, -1e-8]]}}) + "\n"))
    ce = tmp_path / "ce-s0"  # another objective: left out
    ce.mkdir()
    (ce / "config.yaml").write_text(yaml.safe_dump({"objective": {"name": "ce"}}))
    (ce / "results.json").write_text("{}")
    out = subprocess.run([sys.executable, str(ROOT / "scripts/claim_attention.py"), "--signal", str(tmp_path)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    # own: exit 1 (0.1 + 0.2) / 2 = 0.15, exit 2 -1e-8 shown as 0; others: exit 1 0.3, exit 2 0.2
    assert out[2:] == ["| mate | 2 | 0.1500 | 0.0000 | 0.3000 | 0.2000 |"]
