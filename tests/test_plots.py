"""What the comparison and report figures show, read from the figures' artists (no pixels)."""
import json

import pytest
from matplotlib.colors import to_rgba

from mate.experiments.compare import paired_differences, summarise
from mate.experiments.plots import METHOD_COLOURS, method_colours, plot_exit_accuracy, plot_improvement
from mate.experiments.run_report import (COLLAPSE_SHARE, KL_FLOOR, SHARED_DISTANCE, collapsed_teachers, plot_curves,
                                         plot_kl, render_report, teacher_distance, teachers_against_students)


def result(exits, ensemble=50.0):
    return {"test": {"exit_acc": exits, "ensemble_acc": ensemble, "mean_acc": sum(exits) / len(exits)},
            "train_time_s": 1.0, "best_epoch": 1}


# Three seeds. The seed moves every method up and down together (70, 90, 80 for CE's exit 1), so
# each method's own spread over seeds is about 10 points, while its per-seed difference to CE
# barely moves: the improvement's error bars must show that paired spread.
RESULTS = {
    ("ce", 0): result([70.0, 80.0]), ("ce", 1): result([90.0, 85.0]), ("ce", 2): result([80.0, 75.0]),
    ("mate", 0): result([71.0, 83.0]), ("mate", 1): result([92.0, 85.0]), ("mate", 2): result([81.0, 78.0]),
    ("mate_g0.9", 0): result([69.0, 80.0]), ("mate_g0.9", 1): result([90.0, 86.0]), ("mate_g0.9", 2): result([77.0, 75.0]),
}
METHODS = ["ce", "mate", "mate_g0.9"]


def test_one_colour_per_method():
    colours = method_colours(["byot", "zeta_variant", "ce", "alpha_variant", "mate"])
    # the shipped methods keep theirs in every comparison; others take the free colours by name
    assert colours == {"byot": "tab:blue", "zeta_variant": "tab:pink", "ce": "tab:gray", "alpha_variant": "tab:cyan",
                       "mate": "tab:red"}
    assert method_colours(["mate"]) == {"mate": "tab:red"}
    assert method_colours(["zeta_variant", "alpha_variant"]) == {"zeta_variant": "tab:pink", "alpha_variant": "tab:cyan"}
    assert len(set(method_colours([f"v{i}" for i in range(12)]).values())) == 12
    assert len(set(METHOD_COLOURS.values())) == len(METHOD_COLOURS)


def test_compare_plots_share_the_colours_and_show_the_paired_spread(tmp_path):
    summary = summarise(METHODS, 3, RESULTS)
    paired = {m: paired_differences(RESULTS, m, "ce", 3) for m in METHODS if m != "ce"}
    per_exit = plot_exit_accuracy(summary, tmp_path / "per_exit.png")
    improvement = plot_improvement(summary, "ce", tmp_path / "improvement.png", paired)
    assert (tmp_path / "per_exit.png").stat().st_size > 0 and (tmp_path / "improvement.png").stat().st_size > 0

    lines = {c.get_label(): c.lines[0] for c in per_exit.axes[0].containers}  # errorbar: (data line, caps, bars)
    ax = improvement.axes[0]
    bars = {c.get_label(): c for c in ax.containers if hasattr(c, "patches")}
    assert set(lines) == set(METHODS) and set(bars) == {"mate", "mate_g0.9"}
    expected = method_colours(METHODS)
    for method in METHODS:
        assert to_rgba(lines[method].get_color()) == to_rgba(expected[method])
    for method, container in bars.items():
        assert all(to_rgba(p.get_facecolor()) == to_rgba(expected[method]) for p in container.patches)

    # mate - ce per seed: exit 1 (1, 2, 1), exit 2 (3, 0, 3); mate_g0.9 - ce: exit 1 (-1, 0, -3), exit 2 (0, 1, 0)
    diffs = {"mate": [[1, 2, 1], [3, 0, 3]], "mate_g0.9": [[-1, 0, -3], [0, 1, 0]]}
    for method, container in bars.items():
        heights = [p.get_height() for p in container.patches]
        spans = [seg[1][1] - seg[0][1] for seg in container.errorbar.lines[2][0].get_segments()]
        for i, d in enumerate(diffs[method]):
            mean = sum(d) / 3
            std = (sum((v - mean) ** 2 for v in d) / 2) ** 0.5
            assert heights[i] == pytest.approx(mean) and spans[i] == pytest.approx(2 * std)
    # the paired std of mate's exit 1 (0.58) is far below either method's own spread over seeds (10.5 and 10):
    # mate's exit 1 is 71, 92, 81 (mean 244/3, squared deviations summing to 662/3), CE's 70, 90, 80
    assert summary["mate"]["exit_acc"][0] == pytest.approx((244 / 3, (662 / 3 / 2) ** 0.5))
    assert summary["ce"]["exit_acc"][0] == pytest.approx((80.0, 10.0))


def records(kl_floor_cases=False):
    out = []
    for epoch in range(1, 8):
        kl = [[0.5 / epoch, 0.4, 0.3], [0.2, 0.1 / epoch, 0.3], [0.2, 0.2, 0.05 / epoch]]
        if kl_floor_cases and epoch >= 6:
            kl[2][2] = 0.0 if epoch == 6 else -3e-8  # a KL that rounds to zero, or just below it in float32
        out.append({"epoch": epoch, "lr": 0.1,
                    "train": {"loss": 3.0 / epoch, "ce": [1.0 / epoch, 0.8 / epoch, 0.5 / epoch],
                              "attention": [[0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.02, 0.04, 0.94]],
                              "teacher_student_kl": kl},
                    "val": {"exit_acc": [50.0 + epoch, 60.0 + epoch, 70.0], "ensemble_acc": 72.0}})
    return out


def test_curves_have_labels_whole_epochs_and_the_selected_epoch(tmp_path):
    fig = plot_curves(records(), tmp_path / "curves.png", selected_epoch=5)
    loss, accuracy = fig.axes
    assert loss.get_ylabel() == "loss (nats, log scale)" and accuracy.get_ylabel() == "validation accuracy (%)"
    for ax in fig.axes:
        assert ax.get_xlabel() == "epoch"
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)
        marks = [line for line in ax.get_lines() if line.get_label() == "selected: epoch 5"]
        assert len(marks) == 1 and list(marks[0].get_xdata()) == [5, 5]
    assert not any("selected" in line.get_label() for line in plot_curves(records(), tmp_path / "c.png").axes[0].get_lines())


def test_kl_plot_clips_to_a_floor_and_says_so(tmp_path):
    fig = plot_kl(records(kl_floor_cases=True), tmp_path / "kl.png")
    ax = fig.axes[0]
    own = next(line for line in ax.get_lines() if line.get_label() == "exit 3: own teacher")
    assert list(own.get_ydata())[:5] == pytest.approx([0.05 / e for e in range(1, 6)])
    assert list(own.get_ydata())[5:] == [KL_FLOOR, KL_FLOOR]
    assert min(min(line.get_ydata()) for line in ax.get_lines()) == KL_FLOOR
    note = [line for line in ax.get_lines() if line.get_label() == "values below 0.0001 drawn at 0.0001"]
    assert len(note) == 1 and list(note[0].get_ydata()) == [KL_FLOOR, KL_FLOOR]
    clean = plot_kl(records(), tmp_path / "kl_clean.png").axes[0]
    assert not [line for line in clean.get_lines() if "drawn at" in line.get_label()]


def test_one_collapse_rule_for_every_teacher(tmp_path):
    attention = [[0.95, 0.03, 0.01, 0.01],  # teacher 1: collapsed
                 [0.25, 0.50, 0.15, 0.10],
                 [0.02, 0.03, 0.89, 0.06],  # just below the share
                 [0.01, 0.02, 0.03, 0.94]]  # the last teacher: collapsed too
    assert COLLAPSE_SHARE == 0.9
    assert collapsed_teachers(attention) == [0, 3]
    assert collapsed_teachers([[0.9, 0.1], [0.5, 0.5]]) == [0]  # the share itself counts

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    (run / "results.json").write_text(json.dumps({"best_epoch": 5, "select": "mean", "train_time_s": 9.0,
                                                  "test": {"exit_acc": [1.0, 2.0, 3.0], "ensemble_acc": 3.0,
                                                           "mean_acc": 2.0, "n": 10}}))
    page = render_report(run).read_text()
    assert ("Last epoch: diagonal weights A[m, m] = 0.60, 0.70, 0.94; primary KL = 0.071, 0.014, 0.007; collapsed "
            "teachers (A[m, m] ≥ 0.9): teacher 3 (A[3, 3] = 0.94).") in page
    assert "A teacher whose row puts at least 0.9 on its own exit (A[m, m] ≥ 0.9) has collapsed" in page
    # the distillation signal over the last quarter of the 7 epochs (the last one): own teacher = the diagonal
    # of epoch 7's KL (0.5/7, 0.1/7, 0.05/7), the other teachers = its columns' off-diagonal means
    # ((0.2 + 0.2)/2, (0.4 + 0.2)/2, (0.3 + 0.3)/2)
    assert "over the last quarter of training (the last 1 epoch, mean)" in page
    assert "| own teacher | 0.0714 | 0.0143 | 0.0071 |" in page
    assert "| other teachers (mean) | 0.2000 | 0.3000 | 0.3000 |" in page
    # rows 1 and 3 differ by ½ (0.58 + 0.16 + 0.74), rows 2 and 3 by ½ (0.08 + 0.66 + 0.74): 0.74 at most
    assert "at the last epoch: 0.74. The teachers differ (more than 0.05) from epoch 1 on." in page


def test_one_shared_teacher_is_told_apart_from_teachers_that_differ(tmp_path):
    assert SHARED_DISTANCE == 0.05
    assert teacher_distance([[0.25] * 4] * 4) == 0.0
    assert teacher_distance([[1.0, 0.0], [0.0, 1.0]]) == 1.0
    assert teacher_distance([[0.6, 0.4], [0.5, 0.5], [0.55, 0.45]]) == pytest.approx(0.1)
    # a run whose weight network gives every exit the same teacher (rows 0.4 / 0.6 on the two deep exits) until
    # epoch 4, then separates, then (epoch 6) shares again for one epoch: the rows stay apart from epoch 7 only
    shared = [[0.0, 0.4, 0.6]] * 3
    apart = [[0.6, 0.2, 0.2], [0.1, 0.7, 0.2], [0.02, 0.04, 0.94]]
    rows = [shared, shared, shared, apart, apart, shared, apart]
    run = tmp_path / "run"
    run.mkdir()
    metrics = [dict(r, train={**r["train"], "attention": a}) for r, a in zip(records(), rows)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics))
    page = render_report(run).read_text()
    assert "The teachers differ (more than 0.05) from epoch 7 on." in page
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in metrics[:6]))
    page = render_report(run).read_text()
    assert ("at the last epoch: 0.00. At most 0.05: every exit has one shared teacher, the same mixture of the "
            "exits") in page


def test_the_report_says_what_the_exits_can_teach(tmp_path):
    mate_val = {"exit_acc": [85.0, 87.5, 88.25], "ensemble_acc": 88.75, "teacher_acc": [88.0, 88.5, 88.0]}
    lines = teachers_against_students(mate_val)
    assert lines[0].startswith("Ensemble headroom (validation): the exits' ensemble 88.75 % against the last exit's "
                               "88.25 % (+0.50 points). The average of the exits is stronger than the last exit")
    assert lines[2:7] == ["| | exit 1 | exit 2 | exit 3 |", "|---|---:|---:|---:|",
                          "| student (the exit) | 85.00 | 87.50 | 88.25 |", "| its teacher | 88.00 | 88.50 | 88.00 |",
                          "| teacher − student | +3.00 | +1.00 | -0.25 |"]
    # a CE run has no teachers; its exits' average below the last exit is said plainly
    ce = teachers_against_students({"exit_acc": [85.0, 88.25], "ensemble_acc": 88.0})
    assert len(ce) == 2 and "(-0.25 points). The average of the exits is no stronger than the last exit" in ce[0]
    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records()))
    (run / "results.json").write_text(json.dumps({"best_epoch": 5, "select": "mean", "train_time_s": 9.0,
                                                  "val": dict(mate_val, mean_acc=86.9, n=10)}))
    page = render_report(run).read_text()
    assert "| teacher − student | +3.00 | +1.00 | -0.25 |" in page and "(+0.50 points)" in page
