import csv
import math

import pytest
import torch

from mate.errors import MateError
from mate.evaluation import (QS, ExitLogits, anytime_points, budget_curve, calibrate_thresholds, exit_decisions,
                             exit_scores, geometric_shares, simulate, thresholds_for_budget, write_anytime_csv,
                             write_budget_csv)
from mate.evaluation.plots import plot_budget_curves


def test_geometric_shares():
    assert geometric_shares(1.0, 4) == [0.25] * 4
    assert geometric_shares(0.5, 4) == pytest.approx([8 / 15, 4 / 15, 2 / 15, 1 / 15], abs=1e-15)
    assert QS[0] == 0.05 and QS[-1] == 1.95 and len(QS) == 39


def test_calibration_ties_pass_the_threshold():
    # n_1 = floor(4 * 0.5) = 2: the 2nd largest exit-1 score is 0.8, and both samples at 0.8 exit
    scores = torch.tensor([[0.9, 0.8, 0.8, 0.1],
                           [0.0, 0.0, 0.0, 0.3],
                           [0.0, 0.0, 0.0, 0.0]])
    t = calibrate_thresholds(scores, [0.5, 0.25, 0.25])
    assert t.tolist() == [pytest.approx(0.8), pytest.approx(0.3), -math.inf]
    assert exit_decisions(scores, t).tolist() == [0, 0, 0, 1]


def test_calibration_gives_inf_when_no_sample_should_or_can_exit():
    scores = torch.tensor([[0.9, 0.9, 0.9, 0.1], [0.5, 0.5, 0.5, 0.5], [0.0] * 4])
    # n_1 = 1 but three samples tie at 0.9; then n_2 = 2 > |R| = 1 -> +inf
    assert calibrate_thresholds(scores, [0.25, 0.5, 0.25]).tolist() == [pytest.approx(0.9), math.inf, -math.inf]
    # n_1 = floor(4 * 0.2) = 0 -> +inf
    assert calibrate_thresholds(scores, [0.2, 0.6, 0.2])[0].item() == math.inf


def test_exit_is_the_first_passing_exit_and_the_last_takes_the_rest():
    scores = torch.tensor([[0.7, 0.2, 0.5], [0.1, 0.6, 0.59], [0.0, 0.0, 0.0]])
    t = torch.tensor([0.5, 0.6, -math.inf])
    assert exit_decisions(scores, t).tolist() == [0, 1, 0]
    t = torch.tensor([math.inf, math.inf, math.inf])  # the last exit's threshold is ignored
    assert exit_decisions(scores, t).tolist() == [2, 2, 2]


def test_scores():
    logits = torch.tensor([[[0.0, 0.0, 3.0], [5.0, 0.0, 0.0]],
                           [[0.0, 0.0, 1.0], [4.0, 0.0, 0.0]],
                           [[0.0, 2.0, 0.0], [9.0, 0.0, 0.0]],
                           [[0.0, 3.0, 0.0], [1.0, 0.0, 0.0]]])  # K=4 x N=2 x C=3
    patience = exit_scores(logits, "patience")
    assert patience.floor().tolist() == [[1, 1], [2, 2], [1, 3], [2, 4]]
    # equal patience is ordered by confidence: half the max probability
    assert torch.allclose(patience - patience.floor(), 0.5 * exit_scores(logits, "max_prob"))
    uniform = torch.zeros(1, 1, 4)
    assert exit_scores(uniform, "neg_entropy").item() == pytest.approx(-math.log(4))
    assert exit_scores(uniform, "max_prob").item() == pytest.approx(0.25)
    p = torch.tensor([3.0, 0.0, 0.0]).softmax(0)
    assert exit_scores(logits[:1, :1], "max_prob").item() == pytest.approx(p.max().item())
    with pytest.raises(MateError, match="unknown exit score 'margin'"):
        exit_scores(logits, "margin")


def test_simulation_keeps_each_samples_prediction_at_its_exit():
    logits = ExitLogits(torch.tensor([[[2.0, 0.0], [0.0, 0.1], [0.0, 5.0]],
                                      [[0.0, 1.0], [3.0, 0.0], [0.0, 2.0]]]), torch.tensor([0, 0, 1]))
    scores = exit_scores(logits.logits, "max_prob")
    sim = simulate(logits, scores, torch.tensor([0.8, -math.inf]), [10.0, 30.0])
    assert sim.exits.tolist() == [0, 1, 0]
    assert sim.predictions.tolist() == [0, 0, 1]
    assert sim.flops.tolist() == [10.0, 30.0, 10.0]
    assert sim.accuracy == 100.0 and sim.avg_flops == pytest.approx(50 / 3)
    assert sim.shares(2) == pytest.approx([2 / 3, 1 / 3])


def synthetic_logits(n, seed, num_exits=4, classes=5):
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    logits = torch.randn(num_exits, n, classes, generator=g)
    for k in range(num_exits):  # later exits are more often right
        logits[k, torch.arange(n), labels] += 0.8 * (k + 1)
    return ExitLogits(logits, labels)


def test_budget_curve_calibrates_shares_on_validation():
    val, test = synthetic_logits(1000, 0), synthetic_logits(800, 1)
    flops = [10.0, 20.0, 30.0, 40.0]
    points = budget_curve(val, test, flops, "max_prob")
    assert len(points) == 39
    for p in points:
        sim = simulate(val, exit_scores(val.logits, "max_prob"), torch.tensor(p.thresholds), flops)
        target = geometric_shares(p.q, 4)
        # scores are distinct, so validation shares are exactly floor(N pi_k) / N for k < K; the last exit
        # takes the rest, and the average cost is the share-weighted sum of the exits' costs
        shares = [math.floor(1000 * s) / 1000 for s in target[:3]]
        shares.append(1 - sum(shares))
        assert sim.shares(4) == pytest.approx(shares)
        assert p.val_avg_flops == pytest.approx(sum(s * f for s, f in zip(shares, flops)))
        assert p.avg_flops == pytest.approx(sum(s * f for s, f in zip(p.shares, flops)))
    assert points[0].val_avg_flops < points[19].val_avg_flops < points[-1].val_avg_flops


def test_budget_selects_the_most_accurate_setting_within_budget():
    val = synthetic_logits(1000, 0)
    flops = [10.0, 20.0, 30.0, 40.0]
    curve = budget_curve(val, val, flops, "neg_entropy")
    q, thresholds = thresholds_for_budget(val, flops, 40.0, "neg_entropy")
    assert max(p.val_accuracy for p in curve) == next(p.val_accuracy for p in curve if p.q == q)
    q, _ = thresholds_for_budget(val, flops, 20.0, "neg_entropy")
    chosen = next(p for p in curve if p.q == q)
    assert chosen.val_avg_flops <= 20.0
    assert chosen.val_accuracy == max(p.val_accuracy for p in curve if p.val_avg_flops <= 20.0)
    with pytest.raises(MateError, match="cheapest exit alone costs"):
        thresholds_for_budget(val, flops, 5.0)


def test_csv_and_plot(tmp_path):
    val, test = synthetic_logits(300, 0), synthetic_logits(300, 1)
    flops = [1e6, 2e6, 3e6, 4e6]
    curves = {("run_a", "max_prob"): budget_curve(val, test, flops),
              ("run_b", "patience"): budget_curve(val, test, flops, "patience")}
    path = write_budget_csv(curves, tmp_path / "budget.csv")
    rows = list(csv.DictReader(path.open()))
    assert len(rows) == 78 and rows[0]["label"] == "run_a" and rows[-1]["score"] == "patience"
    assert rows[0]["q"] == "0.05" and float(rows[0]["avg_mflops"]) == pytest.approx(curves[("run_a", "max_prob")][0].avg_flops / 1e6, abs=1e-4)
    anytime = {"run_a": anytime_points(test, flops)}
    assert [p.name for p in anytime["run_a"]] == ["exit 1", "exit 2", "exit 3", "exit 4", "ensemble"]
    assert anytime["run_a"][-1].flops == 4e6 and anytime["run_a"][1].accuracy == test.exit_accuracy()[1]
    write_anytime_csv(anytime, tmp_path / "anytime.csv")
    assert len((tmp_path / "anytime.csv").read_text().splitlines()) == 6
    png = plot_budget_curves(curves, tmp_path / "budget.png", anytime)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_validation_split_too_small_to_tell_points_apart_warns_and_the_cheapest_wins():
    import warnings

    from mate.errors import MateWarning

    # 6 validation images that every exit classifies right: every operating point scores 100 %
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    logits = torch.nn.functional.one_hot(labels, 3).float()[None].repeat(4, 1, 1) * torch.tensor(
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0])[None, :, None]
    tiny = ExitLogits(logits, labels)
    flops = [10e6, 20e6, 30e6, 40e6]
    with pytest.warns(MateWarning) as caught:
        q8, t8 = thresholds_for_budget(tiny, flops, 28e6)
        q12, t12 = thresholds_for_budget(tiny, flops, 38e6)
    assert q8 == q12 and torch.equal(t8, t12)  # two budgets, one point: the cheapest of the tied ones
    cheapest = simulate(tiny, exit_scores(tiny.logits, "max_prob"), t8, flops).avg_flops
    assert cheapest == min(simulate(tiny, exit_scores(tiny.logits, "max_prob"), torch.tensor(p.thresholds), flops)
                           .avg_flops for p in budget_curve(tiny, tiny, flops))
    assert str(caught[0].message) == (
        f"the 6 validation images give every operating point within 28 MFLOPs the same accuracy (100.00%), so the "
        f"cheapest ({cheapest / 1e6:.4g} MFLOPs) is taken; a larger validation split (data.val_size) tells them apart")
    # a split that tells the points apart chooses without a warning
    with warnings.catch_warnings():
        warnings.simplefilter("error", MateWarning)
        thresholds_for_budget(synthetic_logits(1000, 0), flops, 30e6)


def test_the_command_line_prints_a_warning_as_one_line(monkeypatch, capsys):
    import warnings

    import mate.commands.listing as listing
    from mate.cli import main
    from mate.errors import MateWarning

    def warns(**options):
        warnings.warn(MateWarning("something to know"), stacklevel=1)
        return 0

    monkeypatch.setattr(listing, "list_command", warns)
    assert main(["list"]) == 0
    assert capsys.readouterr().err == "mate: warning: something to know\n"


def test_budget_plot_names_its_units_and_which_exit_each_circle_is():
    from mate.evaluation.plots import budget_figure

    val, test = synthetic_logits(300, 0), synthetic_logits(300, 1)
    flops = [1e6, 2e6, 3e6, 4e6]
    fig = budget_figure({("run_a", "max_prob"): budget_curve(val, test, flops)}, {"run_a": anytime_points(test, flops)})
    ax = fig.axes[0]
    assert ax.get_xlabel() == "average cost per test image (MFLOPs; 1 MFLOP = 0.5 MMACs)"
    assert ax.get_ylabel() == "test top-1 accuracy (%)"
    labels = {t.get_text(): t.xy for t in ax.texts}
    assert {k: labels[f"exit {k}"][0] for k in range(1, 5)} == {1: 1.0, 2: 2.0, 3: 3.0, 4: 4.0}
