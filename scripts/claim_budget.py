"""Step 5's descriptive budgeted reading (docs/claim_protocol.md): budgeted batch classification of
every final run, thresholds chosen on validation, accuracy on test.

    .venv/bin/python scripts/claim_budget.py --runs RUNS     # RUNS: the runs folder, checkpoints included
    .venv/bin/python scripts/claim_budget.py --runs RUNS --names ce,mate --seeds 5
    .venv/bin/python scripts/claim_budget.py --runs RUNS --keep-only   # budget.json of finished runs, nothing shown

For each setting and seed, the selected checkpoint (RUNS/<setting>-s<seed>/best.pt) gives the exits'
logits on its validation and test splits; for each budget B, the cost of reaching exit 2, exit 3
and exit 4 (the whole network) per sample, the operating point (score max_prob, MSDNet's geometric
exit shares, as in `mate budget`) with the best validation accuracy whose validation cost is at
most B is applied to test. Printed: each setting's test accuracy per budget (mean ± std over the
seeds), and the selected MATE minus CE and minus the baseline with the highest test mean at each
budget, seed by seed; and what each budget bought: the validation cost of the chosen operating
point (median and range over the runs), and in how many runs the budgets chose one point for all.
The settings default to step 5's (scripts/claim_select.py, from the archive), so this runs once
every step-5 run has finished; it decides nothing. Each run's accuracies and chosen points' costs
are kept in its archive folder (budget.json, committed with it), so the reading is repeatable on a
machine without the checkpoints.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from claim_select import BASELINES, FINAL_SEEDS, RUNS, Incomplete, load_final, selections, uniform_control  # noqa: E402

from mate.experiments.compare import paired_stats  # noqa: E402

SCORE = "max_prob"
FIRST_BUDGET_EXIT = 2  # budgets: the costs of exits 2..K


def budget_accuracies(run: Path, score: str = SCORE) -> list[float]:
    """Test accuracy (%) of ``run``'s best.pt at the budgets F_2, ..., F_K (thresholds from validation)."""
    return budget_points(run, score)["test_acc"]


def budget_points(run: Path, score: str = SCORE) -> dict[str, list[float]]:
    """At the budgets F_2, ..., F_K: the test accuracy (%) of ``run``'s best.pt (``test_acc``) and the
    validation cost of the operating point chosen for it, in MFLOPs per image (``val_mflops``)."""
    from mate.engine.trained import load_trained
    from mate.evaluation.budget import simulate, thresholds_for_budget
    from mate.evaluation.flops import exit_costs
    from mate.evaluation.logits import collect_exit_logits
    from mate.evaluation.scores import exit_scores

    trained = load_trained(run)
    flops = exit_costs(trained.model).flops
    val = collect_exit_logits(trained.model, trained.data.val)
    test = collect_exit_logits(trained.model, trained.data.test)
    val_scores, test_scores = exit_scores(val.logits, score), exit_scores(test.logits, score)
    out = {"test_acc": [], "val_mflops": []}
    for budget in flops[FIRST_BUDGET_EXIT - 1:]:
        _, thresholds = thresholds_for_budget(val, flops, budget, score)
        out["test_acc"].append(simulate(test, test_scores, thresholds, flops).accuracy)
        out["val_mflops"].append(simulate(val, val_scores, thresholds, flops).avg_flops / 1e6)
    return out


CACHE = "budget.json"  # in each archived run folder: its budgeted reading, once read from its checkpoint


def cached_budget_points(run: Path, archived: Path) -> dict[str, list[float] | None]:
    """``budget_points(run)``, kept in ``archived``/budget.json the first time, so that the reading can
    be made again where the checkpoints are gone (they are not archived). A budget.json written
    before the chosen points' costs were kept is completed from the checkpoint where it still
    exists; without one its ``val_mflops`` is None."""
    cache = archived / CACHE
    saved = json.loads(cache.read_text()) if cache.is_file() else {}
    if saved.get("score") != SCORE or saved.get("first_budget_exit") != FIRST_BUDGET_EXIT:
        saved = {}
    if saved and ("val_mflops" in saved or not (run / "best.pt").is_file()):
        return {"test_acc": saved["test_acc"], "val_mflops": saved.get("val_mflops")}
    if not (run / "best.pt").is_file():
        raise Incomplete(f"{run.name}: no checkpoint ({run / 'best.pt'}) and no {CACHE} in {archived}")
    points = budget_points(run)
    if archived.is_dir():
        cache.write_text(json.dumps({"score": SCORE, "first_budget_exit": FIRST_BUDGET_EXIT, **points}) + "\n")
    return points


def cached_budget_accuracies(run: Path, archived: Path) -> list[float]:
    """The test accuracies of ``cached_budget_points``."""
    return cached_budget_points(run, archived)["test_acc"]


def report(acc: dict, names: list[str], seeds: int, mate: str, baselines: list[str],
           costs: dict | None = None) -> str:
    """Markdown from {(setting, seed): [accuracy per budget]} and, where every run has them,
    {(setting, seed): [the chosen point's validation MFLOPs per budget]}."""
    k = len(next(iter(acc.values())))
    columns = [f"budget: exit {FIRST_BUDGET_EXIT + i}'s cost" for i in range(k)]
    mean = {n: [statistics.fmean(acc[(n, s)][b] for s in range(seeds)) for b in range(k)] for n in names}
    lines = [f"Budgeted batch classification (score {SCORE}; thresholds from validation; test accuracy %, mean ± std "
             f"over seeds 0-{seeds - 1}):", "", "| setting | " + " | ".join(columns) + " |", "|---|" + "---:|" * k]
    for n in names:
        spread = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in
                  ([acc[(n, s)][b] for s in range(seeds)] for b in range(k))]
        cells = [f"{m:.2f} ± {sd:.2f}" for m, sd in zip(mean[n], spread)]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    best = [max(baselines, key=lambda n: mean[n][b]) for b in range(k)]
    lines += ["", f"`{mate}` minus another setting at each budget, seed by seed (mean ± std; ↑/↓ = seeds above/below):",
              "", "| against | " + " | ".join(columns) + " |", "|---|" + "---|" * k]
    rows = [("CE", ["ce"] * k), ("the best baseline there", best)]
    for label, others in rows:
        cells = []
        for b, other in enumerate(others):
            m, sd, up, down = paired_stats([acc[(mate, s)][b] - acc[(other, s)][b] for s in range(seeds)])
            cells.append(f"`{other}` {m:+.2f} ± {sd:.2f} ({up}↑ {down}↓)")
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    if costs:
        spread = [sorted(c[b] for c in costs.values()) for b in range(k)]
        same = sum(len(set(c)) == 1 for c in costs.values())
        lines += ["", f"The chosen point's validation cost (MFLOPs per image), median [min, max] over the {len(costs)} "
                      "runs: " + "; ".join(f"{col[8:]} {statistics.median(v):.2f} [{v[0]:.2f}, {v[-1]:.2f}]"
                                           for col, v in zip(columns, spread)) + ". "
                  f"In {same} of the {len(costs)} runs every budget chose the same point."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, required=True, help="the runs folder (checkpoints), e.g. runs/claim; "
                                                                 "a run whose archive folder has budget.json needs none")
    parser.add_argument("--archive", type=Path, default=RUNS, help="the archive the selections are read from")
    parser.add_argument("--names", help="settings, comma-separated (default: step 5's; the first 'mate...' one is "
                                        "the selected MATE, 'ce' is CE, the others are baselines)")
    parser.add_argument("--seeds", type=int, default=FINAL_SEEDS)
    parser.add_argument("--keep-only", action="store_true",
                        help="only keep budget.json for every finished run that has a checkpoint (while the "
                             "checkpoints exist; step 5 need not be complete) and print nothing measured")
    args = parser.parse_args(argv)
    if args.keep_only:
        names = args.names.split(",") if args.names else None
        try:
            if names is None:
                chosen = selections(args.archive)
                names = ["ce"] + [chosen[b] for b in BASELINES] + [chosen["mate"], uniform_control(chosen["mate"])]
        except Incomplete as exc:
            sys.exit(f"incomplete: {exc}")
        for run in (f"{n}-s{s}" for n in names for s in range(args.seeds)):
            if not (args.archive / run / "results.json").is_file():
                print(f"{run}: not finished")
                continue
            try:
                cached_budget_points(args.runs / run, args.archive / run)
                print(f"{run}: kept in {args.archive / run / CACHE}")
            except Incomplete as exc:  # its message names the run
                print(exc)
        return
    try:
        if args.names:
            names = args.names.split(",")
            mate = next(n for n in names if n.startswith("mate"))
            baselines = [n for n in names if n not in ("ce", mate) and not n.endswith("_uniform")]
        else:
            chosen = selections(args.archive)
            mate, baselines = chosen["mate"], [chosen[b] for b in BASELINES]
            names = ["ce"] + baselines + [mate, uniform_control(mate)]
            load_final(args.archive, names)  # every step-5 run has finished
        points = {(n, s): cached_budget_points(args.runs / f"{n}-s{s}", args.archive / f"{n}-s{s}")
                  for n in names for s in range(args.seeds)}
    except Incomplete as exc:
        sys.exit(f"incomplete: {exc}")
    acc = {run: p["test_acc"] for run, p in points.items()}
    costs = {run: p["val_mflops"] for run, p in points.items()}
    print(report(acc, names, args.seeds, mate, baselines, costs if all(costs.values()) else None))


if __name__ == "__main__":
    main()
