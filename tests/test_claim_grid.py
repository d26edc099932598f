"""scripts/claim_grid.sh calls the right commands in the right order (on a copy of the script whose
.venv/bin/mate and .venv/bin/python only record their arguments)."""
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FAKE_PYTHON = """#!/bin/bash
echo "python $*" >> "$LOG"
case "$*" in
  *"step4 --names"*) if grep -q '^mate_combo:' src/mate/configs/claim_candidates.yaml; then
                        echo "beed_a1,mate_mix,mate_combo"; else echo "beed_a1,mate_mix"; fi ;;
  *"step4 --write-combo"*) echo "mate_combo: {name: mate}" >> src/mate/configs/claim_candidates.yaml ;;
  *"step5 --names"*) echo "ce,mate,mate_uniform" ;;
  *final*) exit "${FINAL_RC:-0}" ;;
esac
"""


def fake_tree(tmp_path: Path, combo_written: bool) -> Path:
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "claim_grid.sh").write_text((ROOT / "scripts" / "claim_grid.sh").read_text())
    configs = tmp_path / "src" / "mate" / "configs"
    configs.mkdir(parents=True)
    (configs / "claim_candidates.yaml").write_text("mate_mix: {name: mate}\n"
                                                   + ("mate_combo: {name: mate}\n" if combo_written else ""))
    bin_ = tmp_path / ".venv" / "bin"
    bin_.mkdir(parents=True)
    (bin_ / "python").write_text(FAKE_PYTHON)
    (bin_ / "mate").write_text('#!/bin/bash\necho "mate $*" >> "$LOG"\n')
    for f in bin_.iterdir():
        f.chmod(0o755)
    return tmp_path


def grid(tree: Path, step: str, **env) -> tuple[int, list[str]]:
    log = tree / "calls.log"
    out = subprocess.run(["bash", str(tree / "scripts" / "claim_grid.sh"), step], capture_output=True, text=True,
                         env={"PATH": "/usr/bin:/bin", "LOG": str(log), "CLAIM_RUNS": "R", **env}, cwd="/")
    return out.returncode, log.read_text().splitlines() if log.exists() else []


COMMON = ("--config fashion_mnist_claim --variants claim_candidates --workers 2 --runs R "
          "--archive docs/results/claim/runs")


def test_step4_trains_every_trial_in_one_comparison_once_trial_9_is_written(tmp_path):
    code, calls = grid(fake_tree(tmp_path, combo_written=True), "step4")
    assert code == 0
    assert calls == ["python scripts/claim_select.py step4 --names",
                     f"mate compare {COMMON} --methods beed_a1,mate_mix,mate_combo --seeds 3 "
                     "--out docs/results/claim/tuning"]


def test_step4_writes_trial_9_after_trials_1_to_8_then_runs_it(tmp_path):
    code, calls = grid(fake_tree(tmp_path, combo_written=False), "step4")
    assert code == 0
    assert calls == ["python scripts/claim_select.py step4 --names",
                     f"mate compare {COMMON} --methods beed_a1,mate_mix --seeds 3 --out docs/results/claim/tuning",
                     "python scripts/claim_select.py step4 --write-combo",
                     "python scripts/claim_select.py step4 --names",
                     f"mate compare {COMMON} --methods beed_a1,mate_mix,mate_combo --seeds 3 "
                     "--out docs/results/claim/tuning"]


def test_the_exploratory_sweep_waits_for_step_5(tmp_path):
    tree = fake_tree(tmp_path, combo_written=True)
    code, calls = grid(tree, "explore", FINAL_RC="1")  # claim_select.py final: step 5 is not complete
    assert code != 0 and calls == ["python scripts/claim_select.py final"]
    (tree / "calls.log").unlink()
    code, calls = grid(tree, "explore", CLAIM_EXPLORE_RUNS="E")
    assert code == 0 and calls == [
        "python scripts/claim_select.py final",
        "mate sweep --config fashion_mnist_claim --points scripts/claim_explore.yaml --seeds 3 "
        "--workers 2 --out docs/results/claim/explore --runs E --archive docs/results/claim/explore/runs"]


def test_all_runs_every_step_in_turn_and_stops_at_the_first_that_fails(tmp_path):
    code, calls = grid(fake_tree(tmp_path, combo_written=True), "all", FINAL_RC="1")
    assert code != 0
    assert [c.split(" --out ")[-1] for c in calls if c.startswith("mate compare")] == [
        "docs/results/claim/grid", "docs/results/claim/defaults", "docs/results/claim/tuning",
        "docs/results/claim/final"]
    assert calls[-1] == "python scripts/claim_select.py final" and not any(c.startswith("mate sweep") for c in calls)


def test_step5_writes_the_control_trains_seeds_0_to_4_and_keeps_the_budget_inputs(tmp_path):
    code, calls = grid(fake_tree(tmp_path, combo_written=True), "step5")
    assert code == 0
    assert calls == ["python scripts/claim_select.py step5 --write-control",
                     "python scripts/claim_select.py step5 --names",
                     f"mate compare {COMMON} --methods ce,mate,mate_uniform --seeds 5 --out docs/results/claim/final",
                     "python scripts/claim_budget.py --runs R --keep-only"]
