"""scripts/claim_select.py: the claim protocol's selections (docs/claim_protocol.md, steps 3-5)."""
import contextlib
import io
import json
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import load_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "claim_select.py"


def archive(runs: Path, scores: dict[str, float]) -> None:
    """A finished run per method and seed; seed s scores the method's score + (s - 1) / 10."""
    for method, score in scores.items():
        for seed in (0, 1, 2):
            folder = runs / f"{method}-s{seed}"
            folder.mkdir(parents=True)
            # test accuracy is the opposite ranking: the selection must never read it
            result = {"val": {"mean_acc": score + (seed - 1) / 10}, "test": {"mean_acc": 100 - score}}
            (folder / "results.json").write_text(json.dumps(result))


def protocol_variants(tmp_path: Path) -> None:
    """The shipped trials as the protocol wrote them, before steps 4-5 appended MATE's trial 9 and the
    selected MATE's control (the lines from the first '# MATE's trial 9' on)."""
    text = (ROOT / "src/mate/configs/claim_candidates.yaml").read_text()
    (tmp_path / "variants.yaml").write_text(text.split("# MATE's trial 9")[0])


CLAIM_SELECT = load_script("claim_select")


def select(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The script's command line, run in this process (its imports are paid once, not per call)."""
    argv = [str(SCRIPT), *args, "--runs", str(tmp_path / "runs"), "--variants", str(tmp_path / "variants.yaml")]
    out, err, code = io.StringIO(), io.StringIO(), 0
    saved = sys.argv, CLAIM_SELECT.VARIANTS
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            CLAIM_SELECT.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        if exc.code is not None and not isinstance(exc.code, int):
            err.write(f"{exc.code}\n")
    finally:
        sys.argv, CLAIM_SELECT.VARIANTS = saved
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def test_the_command_line_runs_as_a_script(tmp_path):
    archive(tmp_path / "runs", {"mate": 88.5})
    out = subprocess.run([sys.executable, str(SCRIPT), "step3", "--runs", str(tmp_path / "runs")],
                         capture_output=True, text=True)
    assert out.returncode == 1 and out.stderr == "incomplete: byot: seeds [0, 1, 2] not finished\n"


def test_the_selections_of_steps_3_to_5(tmp_path):
    protocol_variants(tmp_path)
    step3 = {"ce": 88.0, "mate": 88.5, "byot": 88.4, "byot_reimpl": 88.1, "phuong": 87.0, "eed": 88.45,
             "beed": 87.5, "sdn": 86.0, "okddip": 88.3, "mate_uniform": 88.6, "ce_ge": 90.0}
    archive(tmp_path / "runs", {k: v for k, v in step3.items() if k != "sdn"})
    out = select(tmp_path, "step3", "--names")
    assert out.returncode == 1 and "sdn: seeds [0, 1, 2] not finished" in out.stderr
    archive(tmp_path / "runs", {"sdn": 86.0})
    out = select(tmp_path, "step3", "--names")
    # the controls (ce_ge, mate_uniform) and CE are not baselines, however high they score
    assert out.stdout.strip() == "eed,byot"

    trials = select(tmp_path, "step4", "--names").stdout.strip().split(",")
    eed_trials = [f"eed_kd{w}" for w in ("0.03125", "0.0625", "0.125", "0.25", "0.5", "2", "4", "8")]
    byot_trials = [f"byot_kd{w}" for w in ("0.1", "0.2", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9")]
    mate_trials = ["mate_mix", "mate_decay", "mate_conf", "mate_rev", "mate_tkd0", "mate_ge", "mate_deeper"]
    assert trials == eed_trials + byot_trials + mate_trials
    # two MATE trials beat the default: the combination is both options, model section included
    archive(tmp_path / "runs", {**{t: 88.0 for t in eed_trials}, **{t: 88.2 for t in byot_trials},
                                "byot_kd0.6": 88.9, "mate_mix": 88.7, "mate_ge": 88.6, "mate_decay": 88.5,
                                "mate_conf": 88.0, "mate_rev": 88.1, "mate_tkd0": 87.9, "mate_deeper": 88.2})
    out = select(tmp_path, "step4", "--write-combo")
    assert out.returncode == 0, out.stderr
    combo = yaml.safe_load((tmp_path / "variants.yaml").read_text())["mate_combo"]
    assert combo == {"objective": {"name": "mate", "kd_mix": 0.5}, "model": {"gradient_equilibrium": True}}
    assert select(tmp_path, "step4", "--write-combo").returncode != 0  # written once
    out = select(tmp_path, "step5", "--names")
    assert out.returncode == 1 and "combo" in out.stderr
    archive(tmp_path / "runs", {"mate_combo": 88.8})
    out = select(tmp_path, "step5", "--names")
    assert out.returncode == 1 and "mate_combo_uniform" in out.stderr
    out = select(tmp_path, "step5", "--names", "--write-control")
    # EED keeps its default (its trials do not beat it), BYOT takes its best trial, MATE the combination
    assert out.stdout.strip() == "ce,byot_kd0.6,byot_reimpl,phuong,eed,beed,sdn,okddip,mate_combo,mate_combo_uniform"
    control = yaml.safe_load((tmp_path / "variants.yaml").read_text())["mate_combo_uniform"]
    assert control == {"objective": {"name": "mate", "kd_mix": 0.5, "teacher": "uniform"},
                       "model": {"gradient_equilibrium": True}}


def test_fewer_than_two_winning_mate_trials_fall_back_to_the_teacher_kd_trial(tmp_path):
    protocol_variants(tmp_path)
    step3 = {m: 88.0 for m in ("ce", "mate", "byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip",
                                "mate_uniform", "ce_ge")}
    step3.update(beed=88.3, sdn=88.2)
    archive(tmp_path / "runs", step3)
    beed = [f"beed_a{a}" for a in ("1", "1.03", "1.06", "1.09", "1.12", "1.18", "1.21", "1.24")]
    sdn = [f"sdn_c{c}" for c in ("0.1", "0.25", "0.5", "1.5", "2", "3", "4", "6")]
    assert select(tmp_path, "step4", "--names").stdout.startswith(",".join(beed + sdn))
    archive(tmp_path / "runs", {**{t: 87.0 for t in beed + sdn}, "mate_mix": 88.1, "mate_decay": 87.0,
                                "mate_conf": 87.0, "mate_rev": 87.0, "mate_tkd0": 87.0, "mate_ge": 87.0,
                                "mate_deeper": 87.0})
    select(tmp_path, "step4", "--write-combo")
    combo = yaml.safe_load((tmp_path / "variants.yaml").read_text())["mate_combo"]
    assert combo == {"objective": {"name": "mate", "teacher_kd_weight": 0.5}}
    archive(tmp_path / "runs", {"mate_combo": 87.5})
    out = select(tmp_path, "step5", "--names", "--write-control")
    # mate_mix beats the default by 0.1: selected; the tuned baselines keep their defaults
    assert out.stdout.strip().endswith("beed,sdn,okddip,mate_mix,mate_mix_uniform")


def test_the_control_of_a_teacher_loss_option_is_mate_uniform(tmp_path):
    """Trial 9's fallback changes only the teachers' own loss, which a uniform teacher (under D2) does
    not have: its control is `mate_uniform` itself, not a copy that would train identically."""
    protocol_variants(tmp_path)
    step3 = {m: 88.0 for m in ("ce", "mate", "byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip",
                                "mate_uniform", "ce_ge")}
    step3.update(beed=88.3, sdn=88.2)
    archive(tmp_path / "runs", step3)
    beed = [f"beed_a{a}" for a in ("1", "1.03", "1.06", "1.09", "1.12", "1.18", "1.21", "1.24")]
    sdn = [f"sdn_c{c}" for c in ("0.1", "0.25", "0.5", "1.5", "2", "3", "4", "6")]
    archive(tmp_path / "runs", {**{t: 87.0 for t in beed + sdn}, "mate_mix": 87.0, "mate_decay": 87.0,
                                "mate_conf": 87.0, "mate_rev": 87.0, "mate_tkd0": 87.0, "mate_ge": 87.0,
                                "mate_deeper": 87.0})
    select(tmp_path, "step4", "--write-combo")
    archive(tmp_path / "runs", {"mate_combo": 88.4})
    before = (tmp_path / "variants.yaml").read_text()
    out = select(tmp_path, "step5", "--names", "--write-control")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().endswith("okddip,mate_combo,mate_uniform")
    assert (tmp_path / "variants.yaml").read_text() == before  # nothing to write
    # a setting whose options a uniform teacher does use keeps a control of its own
    assert CLAIM_SELECT.control_sections("mate_conf") == {"objective": {"name": "mate", "offdiag": "confidence",
                                                                         "teacher": "uniform"}}
    assert CLAIM_SELECT.uniform_control("mate_conf") == "mate_conf_uniform"
    assert CLAIM_SELECT.uniform_control("mate_rev") == "mate_uniform"


def final_run(runs: Path, name: str, seed: int, exits: list[float], ensemble: float, val: float | None = None) -> None:
    """A step-5 run: test accuracies given; seeds 0-2 keep the validation score the selections read."""
    path = runs / f"{name}-s{seed}" / "results.json"
    old = json.loads(path.read_text()) if path.is_file() else {}
    result = {"val": {"mean_acc": old.get("val", {}).get("mean_acc", val)}, "train_time_s": 10.0,
              "test": {"exit_acc": exits, "ensemble_acc": ensemble, "mean_acc": sum(exits) / len(exits)}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result))


def test_the_final_report_compares_the_selected_mate_seed_by_seed(tmp_path):
    protocol_variants(tmp_path)
    runs = tmp_path / "runs"
    step3 = {m: 88.0 for m in ("ce", "mate", "byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip",
                                "mate_uniform", "ce_ge")}
    step3.update(beed=88.3, sdn=88.2)
    archive(runs, step3)
    beed = [f"beed_a{a}" for a in ("1", "1.03", "1.06", "1.09", "1.12", "1.18", "1.21", "1.24")]
    sdn = [f"sdn_c{c}" for c in ("0.1", "0.25", "0.5", "1.5", "2", "3", "4", "6")]
    archive(runs, {**{t: 87.0 for t in beed + sdn}, "mate_mix": 88.1, "mate_decay": 87.0, "mate_conf": 87.0,
                   "mate_rev": 87.0, "mate_tkd0": 87.0, "mate_ge": 87.0, "mate_deeper": 87.0})
    select(tmp_path, "step4", "--write-combo")
    archive(runs, {"mate_combo": 87.5})
    assert select(tmp_path, "step5", "--names", "--write-control").returncode == 0
    out = select(tmp_path, "final")
    assert out.returncode == 1 and "step 5 runs not finished" in out.stderr and "ce-s3" in out.stderr

    baselines = ["byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip"]
    tests = {m: [80.0, 81.0, 82.0, 83.0] for m in ["ce"] + baselines}
    tests.update(beed=[80.0, 81.5, 82.0, 83.0], phuong=[80.5, 81.0, 82.0, 83.2])
    for seed in range(5):
        for m, exits in tests.items():
            final_run(runs, m, seed, exits, 84.0, val=88.0)
        # MATE: exit 1 +1.0..+1.4 over CE; exit 2 equal; exit 3 equal in the mean, ±1 per seed; exit 4 -0.5
        final_run(runs, "mate_mix", seed, [81.0 + 0.1 * seed, 81.0, 82.0 + [1, -1, 1, -1, 0][seed], 82.5], 84.0,
                  val=88.3 + 0.1 * (seed - 3))
        final_run(runs, "mate_mix_uniform", seed, [81.0, 81.0, 82.0, 82.5], 84.0,
                  val=[87.9, 88.2, 88.1, 88.2, 88.5][seed])
    out = select(tmp_path, "final")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == ("Settings: ce = `ce`, byot = `byot`, byot_reimpl = `byot_reimpl`, phuong = `phuong`, "
                        "eed = `eed`, beed = `beed`, sdn = `sdn`, okddip = `okddip`, mate = `mate_mix`; "
                        "control = `mate_mix_uniform`.")
    assert "| ce | +1.20 ± 0.16 (5↑ 0↓) | +0.00 ± 0.00 (0↑ 0↓) | +0.00 ± 1.00 (2↑ 2↓) | -0.50 ± 0.00 (0↑ 5↓) | " \
           "+0.00 ± 0.00 (0↑ 0↓) |" in lines
    assert "| beed | +1.20 ± 0.16 (5↑ 0↓) | -0.50 ± 0.00 (0↑ 5↓) | +0.00 ± 1.00 (2↑ 2↓) | -0.50 ± 0.00 (0↑ 5↓) | " \
           "+0.00 ± 0.00 (0↑ 0↓) |" in lines
    assert ("| against CE | wins (+1.20 ± 0.16) | ties (+0.00 ± 0.00) | ties (+0.00 ± 1.00) | loses (-0.50 ± 0.00) "
            "| ties (+0.00 ± 0.00) |") in lines
    # the best baseline at each exit is the highest test mean there (the first listed on a tie)
    assert ("| best baseline there (test mean) | `phuong` 80.50 | `beed` 81.50 | `byot` 82.00 | `phuong` 83.20 "
            "| `byot` 84.00 |") in lines
    assert ("| against the best baseline | wins (+0.70 ± 0.16) | loses (-0.50 ± 0.00) | ties (+0.00 ± 1.00) "
            "| loses (-0.70 ± 0.00) | ties (+0.00 ± 0.00) |") in lines
    # exit 2 short of BEED; exit 4 short of CE and every baseline; exit 3 equal is not short
    short = next(line for line in lines if "falls short" in line)
    assert short.startswith("`mate_mix`'s mean falls short at 9 (exit, method) pair(s): "
                            "exit 2: 81.00 against `beed` 81.50 (-0.50); exit 4: 82.50 against `ce` 83.00 (-0.50)")
    assert "exit 4: 82.50 against `phuong` 83.20 (-0.70)" in short and "exit 3" not in short
    # validation, seed by seed: +0.10, -0.10, +0.10, +0.10, -0.10: ahead in the mean but in 3 seeds only
    control = lines[-1]
    assert "per seed: +0.10, -0.10, +0.10, +0.10, -0.10; mean +0.02, 3 of 5 seeds ahead" in control
    assert "**does not beat**" in control


def test_the_exploratory_questions_are_read_on_validation_against_mate_and_the_uniform_control(tmp_path):
    runs, explore = tmp_path / "runs", tmp_path / "explore"
    args = ["explore", "--explore-runs", str(explore)]

    def put(folder: Path, exits: list[float]) -> None:  # test is the opposite ranking: never read
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps(
            {"val": {"exit_acc": exits, "ensemble_acc": 90.0, "mean_acc": sum(exits) / len(exits)},
             "test": {"exit_acc": [10.0] * 4, "ensemble_acc": 10.0, "mean_acc": 10.0}}))

    # scores: mate 88.4/88.5/88.6, control 88.5/88.6/88.7 (every exit at the score)
    for seed in (0, 1, 2):
        put(runs / f"mate-s{seed}", [88.4 + seed / 10] * 4)
        put(runs / f"mate_uniform-s{seed}", [88.5 + seed / 10] * 4)
    missing = select(tmp_path, *args)
    assert missing.returncode == 1 and "mate_sqrt: seeds [0, 1, 2] not finished" in missing.stderr
    for seed, val in enumerate([88.8, 88.55, 88.9]):
        put(explore / f"mate_sqrt-s{seed}", [val] * 4)
    missing = select(tmp_path, *args)
    assert missing.returncode == 1 and "mate_others: seeds [0, 1, 2] not finished" in missing.stderr
    # teachers barred from their own exit: exits 3-4 up by 0.3/0.2/0.1 on mate, exits 1-2 down as much
    for seed, gain in enumerate([0.3, 0.2, 0.1]):
        m = 88.4 + seed / 10
        put(explore / f"mate_others-s{seed}", [m - gain, m - gain, m + gain, m + gain])
    out = select(tmp_path, *args)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[2] == "| mate_sqrt | 88.80 | 88.55 | 88.90 | 88.75 ± 0.18 | 3 |"
    assert lines[3] == "| mate_uniform | 88.50 | 88.60 | 88.70 | 88.60 ± 0.10 | 3 |"
    assert "| mate_others | 3 | 88.30 | 88.30 | 88.70 | 88.70 | 90.00 |" in lines
    text = "\n".join(lines)
    # against the control: +0.30, -0.05, +0.20: ahead in the mean, not in every seed
    assert ("mate_sqrt − mate_uniform, score, per seed: +0.30, -0.05, +0.20; mean +0.15 ± 0.18, "
            "2 of 3 seeds ahead.\n`mate_sqrt`'s weight network **does not beat** the uniform control") in text
    assert "mate_sqrt − mate, score, per seed: +0.40, +0.05, +0.30; mean +0.25 ± 0.18, 3 of 3 seeds ahead." in text
    assert "mate_others − mate_uniform, score, per seed: -0.10, -0.10, -0.10" in text
    assert "`mate_others`'s weight network **does not beat** the uniform control" in text
    assert ("mate_others − mate, mean of exits 3-4, per seed: +0.30, +0.20, +0.10; mean +0.20 ± 0.10, 3 of 3 seeds "
            "ahead.\nThe deep exits **gain** from teachers barred from their own exit") in text
    # ahead in every seed: the sqrt(d/8) network beats the control; one seed behind at exits 3-4: no gain
    put(explore / "mate_sqrt-s1", [88.65] * 4)
    put(explore / "mate_others-s2", [88.6, 88.6, 88.6, 88.5])
    text = select(tmp_path, *args).stdout
    assert "`mate_sqrt`'s weight network **beats** the uniform control" in text
    assert "The deep exits **do not gain**" in text


def test_the_runs_per_exit_are_mean_validation_accuracies_over_the_finished_seeds(tmp_path):
    runs = tmp_path / "runs"
    for name, seed, exits, ensemble in [("ce", 0, [80.0, 84.0], 85.0), ("ce", 2, [81.0, 85.0], 86.0),
                                        ("mate", 1, [82.5, 84.25], 85.5)]:
        folder = runs / f"{name}-s{seed}"
        folder.mkdir(parents=True)
        (folder / "results.json").write_text(json.dumps(
            {"val": {"exit_acc": exits, "ensemble_acc": ensemble, "mean_acc": sum(exits) / 2},
             "test": {"exit_acc": [0.0, 0.0], "ensemble_acc": 0.0}}))  # never read
    out = select(tmp_path, "step3", "--exits")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["| setting | seeds | val exit 1 | val exit 2 | val ensemble |",
                                       "|---|---:|---:|---:|---:|",
                                       "| ce | 2 | 80.50 | 84.50 | 85.50 |",
                                       "| mate | 1 | 82.50 | 84.25 | 85.50 |"]


def test_progress_counts_each_steps_archived_runs_against_its_plan(tmp_path):
    protocol_variants(tmp_path)
    out = select(tmp_path, "progress").stdout.splitlines()
    assert out == ["step 3: 0 of 33 runs archived; next: ce-s0, ce-s1, ce-s2, mate-s0, ...",
                   "step 4: waits for step 3", "step 5: waits for step 4"]
    step3 = {"ce": 88.0, "mate": 88.5, "byot": 88.4, "byot_reimpl": 88.1, "phuong": 87.0, "eed": 88.45,
             "beed": 87.5, "sdn": 86.0, "okddip": 88.3, "mate_uniform": 88.6, "ce_ge": 90.0}
    archive(tmp_path / "runs", step3)
    archive(tmp_path / "runs", {"mate_mix": 88.0})
    out = select(tmp_path, "progress").stdout.splitlines()
    # MATE's trials 2-8 and the 8 non-default trials of eed and byot (the two strongest), 3 seeds each;
    # trial 9 is not named until trials 1-8 are scored
    assert out == ["step 3: 33 of 33 runs archived",
                   "step 4: 3 of 69 (+ 3 not yet named) runs archived; next: mate_decay-s0, mate_decay-s1, "
                   "mate_decay-s2, mate_conf-s0, ...",
                   "step 5: waits for step 4"]
