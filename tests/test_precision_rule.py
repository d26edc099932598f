"""scripts/precision_rule.py: the fp32/bf16 rule of the claim's step 2 and of the main job's study."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "precision_rule.py"


def write(runs: Path, name: str, test: list[float], val: list[float]) -> None:
    folder = runs / name
    folder.mkdir(parents=True)
    result = {"test": {"exit_acc": test[:-1], "ensemble_acc": test[-1]},
              "val": {"exit_acc": val[:-1], "ensemble_acc": val[-1]}, "train_time_s": 10.0}
    (folder / "results.json").write_text(json.dumps(result))


def rule(runs: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, str(SCRIPT), str(runs), *args], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_main_jobs_rule_reads_test_and_the_half_time_bar(tmp_path):
    runs = tmp_path / "runs"
    offsets = [-0.1, 0.0, 0.1]  # std 0.1 at every exit
    for method in ("ce", "mate"):
        for seed, o in enumerate(offsets):
            base = [91.0 + o, 92.0 + o, 93.0 + o]  # two exits and the ensemble
            write(runs, f"{method}_fp32-s{seed}", base, [80.0, 80.0, 80.0])
            # bf16: exit 2 of MATE 0.15 lower on test (beyond the 0.1 spread); validation moved by 5 points
            shifted = [base[0], base[1] - (0.15 if method == "mate" else 0.05), base[2]]
            write(runs, f"{method}_bf16-s{seed}", shifted, [85.0, 85.0, 85.0])
    out = rule(runs, "--split", "test")
    assert "| mate | exit 2 | 92.00 ± 0.10 | 91.85 ± 0.10 | -0.15 | -0.15, -0.15, -0.15 | **no** |" in out
    assert "| ce | exit 2 | 92.00 ± 0.10 | 91.95 ± 0.10 | -0.05 | -0.05, -0.05, -0.05 | yes |" in out
    assert "rule: bf16 moves an exit by more than the seed spread" in out
    assert "half-time" not in out  # no candidate runs yet

    for seed, (first, last) in enumerate([(91.2, 93.1), (91.1, 92.9), (91.0, 92.8)]):
        write(runs, f"mate_bf16_e8-s{seed}", [first, 92.0, last, 92.5], [0.0] * 4)  # 3 exits + ensemble
    out = rule(runs, "--split", "test")
    assert "exit 1: 91.10 (bar 91.0: met)" in out and "last exit: 92.93 (bar 93.0: NOT met)" in out
    assert "verdict: fails the bar" in out


def test_step_2_reads_validation_of_a_sweeps_run_names(tmp_path):
    runs = tmp_path / "runs"
    for method in ("ce", "mate"):
        for seed, o in enumerate([-0.2, 0.0, 0.2]):
            write(runs, f"method={method}_amp=none-s{seed}", [70.0, 70.0, 70.0], [88.0 + o, 89.0 + o, 89.5 + o])
            write(runs, f"method={method}_amp=bf16-s{seed}", [60.0, 60.0, 60.0], [88.1 + o, 89.0 + o, 89.4 + o])
    out = rule(runs)
    assert out.startswith("Validation (the rule):")
    assert "| ce | exit 1 | 88.00 ± 0.20 | 88.10 ± 0.20 | +0.10 | +0.10, +0.10, +0.10 | yes |" in out
    assert "rule: bf16 keeps every exit within the seed spread" in out
