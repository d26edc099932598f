"""scripts/claim_budget.py: step 5's budgeted reading (docs/claim_protocol.md)."""
import json
from pathlib import Path

import pytest
from conftest import load_script



claim_budget = load_script("claim_budget")


def test_the_report_pairs_mate_with_ce_and_the_best_baseline_at_each_budget():
    # two budgets, two seeds; byot has the best baseline mean at the first budget, eed at the second
    acc = {("ce", 0): [80.0, 85.0], ("ce", 1): [81.0, 86.0],
           ("byot", 0): [82.0, 84.0], ("byot", 1): [82.0, 84.0],
           ("eed", 0): [79.0, 88.0], ("eed", 1): [80.0, 87.0],
           ("mate", 0): [83.0, 87.5], ("mate", 1): [81.5, 86.5]}
    lines = claim_budget.report(acc, ["ce", "byot", "eed", "mate"], 2, "mate", ["byot", "eed"]).splitlines()
    assert lines[2:8] == ["| setting | budget: exit 2's cost | budget: exit 3's cost |", "|---|---:|---:|",
                          "| ce | 80.50 ± 0.71 | 85.50 ± 0.71 |", "| byot | 82.00 ± 0.00 | 84.00 ± 0.00 |",
                          "| eed | 79.50 ± 0.71 | 87.50 ± 0.71 |", "| mate | 82.25 ± 1.06 | 87.00 ± 0.71 |"]
    # mate − ce per seed: +3.0, +0.5 (budget 1) and +2.5, +0.5 (budget 2); mate − byot at budget 1: +1.0, -0.5;
    # mate − eed at budget 2: -0.5, -0.5
    assert lines[-2] == "| CE | `ce` +1.75 ± 1.77 (2↑ 0↓) | `ce` +1.50 ± 1.41 (2↑ 0↓) |"
    assert lines[-1] == "| the best baseline there | `byot` +0.25 ± 1.06 (1↑ 1↓) | `eed` -0.50 ± 0.00 (0↑ 2↓) |"


def test_the_report_says_what_each_budget_bought_where_every_run_has_its_costs():
    acc = {("ce", 0): [80.0, 85.0], ("mate", 0): [83.0, 87.5], ("byot", 0): [82.0, 84.0]}
    costs = {("ce", 0): [20.0, 20.0], ("mate", 0): [30.0, 40.0], ("byot", 0): [25.0, 25.0]}
    lines = claim_budget.report(acc, ["ce", "byot", "mate"], 1, "mate", ["byot"], costs).splitlines()
    assert lines[-1] == ("The chosen point's validation cost (MFLOPs per image), median [min, max] over the 3 runs: "
                         "exit 2's cost 25.00 [20.00, 30.00]; exit 3's cost 25.00 [20.00, 40.00]. "
                         "In 2 of the 3 runs every budget chose the same point.")
    assert "validation cost" not in claim_budget.report(acc, ["ce", "byot", "mate"], 1, "mate", ["byot"])


def test_each_budget_takes_the_best_validation_point_within_it_and_reads_it_on_test(tiny_run):
    from mate.engine.trained import load_trained
    from mate.evaluation.budget import QS, calibrate_thresholds, geometric_shares, simulate
    from mate.evaluation.flops import exit_costs
    from mate.evaluation.logits import collect_exit_logits
    from mate.evaluation.scores import exit_scores

    run = Path(tiny_run("mate")["run_dir"])
    got = claim_budget.budget_accuracies(run)
    # the protocol's rule, written out: of MSDNet's 39 operating points, the best validation accuracy among
    # those whose validation cost fits the budget (ties: the cheaper), its accuracy on test
    trained = load_trained(run)
    flops = exit_costs(trained.model).flops
    val, test = (collect_exit_logits(trained.model, split) for split in (trained.data.val, trained.data.test))
    val_scores, test_scores = exit_scores(val.logits, "max_prob"), exit_scores(test.logits, "max_prob")
    points = []
    for q in QS:
        thresholds = calibrate_thresholds(val_scores, geometric_shares(q, 4))
        on_val = simulate(val, val_scores, thresholds, flops)
        points.append((on_val.accuracy, -on_val.avg_flops, simulate(test, test_scores, thresholds, flops).accuracy))
    chosen = [max(p for p in points if -p[1] <= budget) for budget in flops[1:]]
    assert len(got) == 3 and got == pytest.approx([p[2] for p in chosen], abs=0)
    # the whole network's cost admits every point, so the last budget's choice is the best on validation
    assert got[-1] == max(points)[2]
    # what each budget bought: the chosen point's validation cost, in MFLOPs per image, within the budget
    costs = claim_budget.budget_points(run)["val_mflops"]
    assert costs == pytest.approx([-p[1] / 1e6 for p in chosen], rel=1e-12)
    assert all(c <= budget / 1e6 for c, budget in zip(costs, flops[1:]))


def test_each_runs_accuracies_are_kept_in_its_archive_folder_and_read_back_without_the_checkpoint(tiny_run, tmp_path):
    run = Path(tiny_run("mate")["run_dir"])
    archived = tmp_path / "archive" / "mate-s0"
    archived.mkdir(parents=True)
    acc = claim_budget.cached_budget_accuracies(run, archived)
    assert acc == claim_budget.budget_accuracies(run)
    points = claim_budget.budget_points(run)
    assert json.loads((archived / "budget.json").read_text()) == {"score": "max_prob", "first_budget_exit": 2,
                                                                  "test_acc": acc,
                                                                  "val_mflops": points["val_mflops"]}
    gone = tmp_path / "no_checkpoints" / "mate-s0"
    assert claim_budget.cached_budget_accuracies(gone, archived) == acc  # read back, nothing evaluated
    with pytest.raises(claim_budget.Incomplete, match="no checkpoint"):
        claim_budget.cached_budget_accuracies(gone, tmp_path / "archive" / "mate-s1")
    assert claim_budget.cached_budget_points(gone, archived) == points
    # a budget.json kept before the chosen points' costs were: completed from the checkpoint where it exists,
    # read as it is (costs None) where it does not
    (archived / "budget.json").write_text(json.dumps({"score": "max_prob", "first_budget_exit": 2,
                                                      "test_acc": acc}))
    assert claim_budget.cached_budget_points(gone, archived) == {"test_acc": acc, "val_mflops": None}
    assert claim_budget.cached_budget_points(run, archived) == points
    assert json.loads((archived / "budget.json").read_text())["val_mflops"] == points["val_mflops"]
    # a cache of another reading (another score) is not taken for this one
    (archived / "budget.json").write_text(json.dumps({"score": "entropy", "first_budget_exit": 2, "test_acc": [0.0]}))
    with pytest.raises(claim_budget.Incomplete, match="no checkpoint"):
        claim_budget.cached_budget_accuracies(gone, archived)


def test_keep_only_writes_each_finished_runs_reading_and_prints_no_number(tiny_run, tmp_path, capsys):
    run = Path(tiny_run("mate")["run_dir"])
    runs, archive = tmp_path / "runs", tmp_path / "archive"
    runs.mkdir()
    (runs / "mate-s0").symlink_to(run, target_is_directory=True)  # the trained run, under the archive's name
    for name in ("mate-s0", "mate-s1", "ce-s0"):
        (archive / name).mkdir(parents=True)
    (archive / "mate-s0" / "results.json").write_text("{}")
    (archive / "ce-s0" / "results.json").write_text("{}")  # finished, but its checkpoint is gone
    claim_budget.main(["--runs", str(runs), "--archive", str(archive), "--names", "ce,mate", "--seeds", "2",
                       "--keep-only"])
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ce-s0: no checkpoint")
    assert out[1] == "ce-s1: not finished"
    assert out[2] == f"mate-s0: kept in {archive / 'mate-s0' / 'budget.json'}"
    assert out[3] == "mate-s1: not finished"
    assert json.loads((archive / "mate-s0" / "budget.json").read_text())["test_acc"] == \
        claim_budget.budget_accuracies(run)
    assert not (archive / "ce-s0" / "budget.json").exists()
