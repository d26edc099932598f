"""The selections of docs/claim_protocol.md, steps 3-5, read from the archived runs.

    .venv/bin/python scripts/claim_select.py step3            # every method at its defaults, ranked
    .venv/bin/python scripts/claim_select.py step3 --names    # only the two strongest baselines
    .venv/bin/python scripts/claim_select.py step4            # every trial, and what is selected
    .venv/bin/python scripts/claim_select.py step4 --exits    # the same runs per exit (validation)
    .venv/bin/python scripts/claim_select.py step4 --write-combo   # adds MATE's trial 9 to the variants
    .venv/bin/python scripts/claim_select.py step5 --names    # the methods of the final table
    .venv/bin/python scripts/claim_select.py step5 --write-control  # adds the selected MATE's control
    .venv/bin/python scripts/claim_select.py final    # step 5's test table and its reading (markdown)
    .venv/bin/python scripts/claim_select.py explore  # the exploratory questions after step 5 (validation)
    .venv/bin/python scripts/claim_select.py progress # how many runs of each step are archived

The selection score of a setting is the validation mean over exits at the selected checkpoint
(``val.mean_acc`` in results.json), averaged over seeds 0, 1, 2. Every selection reads validation
only; test accuracy is read by ``final`` alone, once every selection is made and every step-5 run
(seeds 0-4) has finished. A step whose runs are not all finished says which are missing and
selects nothing (exit code 1).
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import yaml

from mate.experiments.compare import markdown_table, paired_differences, paired_stats, summarise

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "docs/results/claim/runs"
VARIANTS = ROOT / "src/mate/configs/claim_candidates.yaml"
SEEDS = (0, 1, 2)
FINAL_SEEDS = 5  # step 5: seeds 0-4
STEP3 = ("ce", "mate", "byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip", "mate_uniform", "ce_ge")
BASELINES = ("byot", "byot_reimpl", "phuong", "eed", "beed", "sdn", "okddip")
# Each baseline's trials besides its default (its step-3 run): the variants with this prefix.
TRIAL_PREFIX = {"byot": "byot_kd", "byot_reimpl": "byot_reimpl_kd", "phuong": "phuong_kd", "eed": "eed_kd",
                "okddip": "okddip_kd", "beed": "beed_a", "sdn": "sdn_c"}
MATE_TRIALS = ("mate", "mate_mix", "mate_decay", "mate_conf", "mate_rev", "mate_tkd0", "mate_ge", "mate_deeper")
COMBO_FALLBACK = "mate_tkd0.5"
# The exploratory questions after step 5, the named points of one `mate sweep`
# (scripts/claim_explore.yaml): the attention scale sqrt(d/8), and teachers barred from their own exit.
EXPLORE_RUNS = ROOT / "docs/results/claim/explore/runs"
EXPLORE = ("mate_sqrt", "mate_others")
DEEP_EXITS = (2, 3)  # exits 3 and 4 (0-based): the second question's rule


class Incomplete(Exception):
    pass


def scores(runs: Path, method: str) -> dict[int, float]:
    out = {}
    for seed in SEEDS:
        path = runs / f"{method}-s{seed}" / "results.json"
        if path.is_file():
            out[seed] = json.loads(path.read_text())["val"]["mean_acc"]
    return out


def score(runs: Path, method: str) -> float:
    """The selection score; Incomplete while a seed is missing."""
    by_seed = scores(runs, method)
    if len(by_seed) < len(SEEDS):
        raise Incomplete(f"{method}: seeds {sorted(set(SEEDS) - set(by_seed))} not finished")
    return statistics.fmean(by_seed.values())


def table(runs: Path, methods: list[str], title: str) -> str:
    return score_table({m: scores(runs, m) for m in methods}, title)


def score_table(rows: dict[str, dict[int, float]], title: str) -> str:
    """Markdown: a row per setting (its score per seed, mean ± std), best mean first."""
    methods = list(rows)
    lines = [f"| {title} | seed 0 | seed 1 | seed 2 | mean ± std | seeds |", "|---|---:|---:|---:|---:|---:|"]
    def key(m):
        return -statistics.fmean(rows[m].values()) if rows[m] else float("inf")
    for m in sorted(methods, key=key):
        values = list(rows[m].values())
        cells = " | ".join(f"{rows[m][s]:.2f}" if s in rows[m] else "—" for s in SEEDS)
        mean = (f"{statistics.fmean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"
                if values else "—")
        lines.append(f"| {m} | {cells} | {mean} | {len(values)} |")
    return "\n".join(lines)


def val_results(runs: Path, method: str) -> dict[int, dict]:
    """{seed: the `val` record of results.json} for the finished seeds of 0-2."""
    return {s: json.loads(p.read_text())["val"] for s in SEEDS if (p := runs / f"{method}-s{s}" / "results.json").is_file()}


def exit_table(runs: Path, methods: list[str], labels: dict[str, tuple[Path, str]] | None = None) -> str:
    """Markdown: each setting's validation accuracy per exit and of the ensemble at the selected
    checkpoint, mean over the finished seeds of 0-2 (the rows in the order given). A name in
    ``labels`` is read from its own (folder, run name) instead of ``runs``."""
    lines: list[str] = []
    labels = labels or {}
    for m in methods:
        vals = list(val_results(*labels.get(m, (runs, m))).values())
        if not vals:
            continue
        if not lines:
            k = len(vals[0]["exit_acc"])
            lines = ["| setting | seeds | " + " | ".join(f"val exit {i + 1}" for i in range(k)) + " | val ensemble |",
                     "|---|---:|" + "---:|" * (k + 1)]
        cells = [statistics.fmean(v["exit_acc"][i] for v in vals) for i in range(k)]
        cells.append(statistics.fmean(v["ensemble_acc"] for v in vals))
        lines.append(f"| {m} | {len(vals)} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def best(runs: Path, trials: list[str]) -> str:
    """The trial with the best score; on a tie the earlier trial (the default is first)."""
    values = {t: score(runs, t) for t in trials}
    return max(trials, key=lambda t: (values[t], -trials.index(t)))


def strongest_baselines(runs: Path) -> list[str]:
    values = {m: score(runs, m) for m in BASELINES}
    return sorted(BASELINES, key=lambda m: (-values[m], BASELINES.index(m)))[:2]


def variants() -> dict:
    return yaml.safe_load(VARIANTS.read_text())


def baseline_trials(method: str) -> list[str]:
    return [method] + [v for v in variants() if v.startswith(TRIAL_PREFIX[method])]


def as_sections(variant) -> dict:
    """A variant in its long form: {objective: {...}, model: {...}, ...}."""
    return dict(variant) if isinstance(variant.get("objective"), dict) else {"objective": dict(variant)}


def combo(runs: Path) -> tuple[str, dict]:
    """MATE's trial 9: every option of trials 2-8 that beats trial 1, together; the fallback when
    fewer than two do (a single one would repeat its own trial)."""
    base = score(runs, "mate")
    winners = [t for t in MATE_TRIALS[1:] if score(runs, t) > base]
    table_ = variants()
    if len(winners) < 2:
        return COMBO_FALLBACK, as_sections(table_[COMBO_FALLBACK])
    merged: dict = {}
    for t in winners:
        for section, values in as_sections(table_[t]).items():
            merged.setdefault(section, {}).update(values)
    return "+".join(winners), merged


def mate_trials() -> list[str]:
    return list(MATE_TRIALS) + (["mate_combo"] if "mate_combo" in variants() else [])


def selections(runs: Path) -> dict[str, str]:
    """Each method's selected setting: the two tuned baselines' and MATE's best trials, the other
    baselines at their defaults."""
    out = {"ce": "ce"}
    tuned = strongest_baselines(runs)
    for m in BASELINES:
        out[m] = best(runs, baseline_trials(m)) if m in tuned else m
    if "mate_combo" not in variants():
        raise Incomplete("MATE's trial 9 is not written yet (step4 --write-combo)")
    selected = best(runs, mate_trials())
    out["mate"] = selected if score(runs, selected) > score(runs, "mate") else "mate"
    return out


# Options that act only through the weight network (its projections), and, under D2, only through
# the teachers' own loss: a uniform teacher has no weight network, and under D2 its loss has no
# parameter to reach (the objective skips it), so its control leaves them out (docs/claim_protocol.md).
WEIGHT_NET_ONLY = ("attention_scale", "proj_dim")
TEACHER_LOSS_ONLY = ("teacher_kd_weight", "teacher_kl", "teacher_ce_weight")


def control_sections(name: str) -> dict:
    """The uniform-teacher control of a MATE setting: the same options with `teacher: uniform`, less
    those a uniform teacher cannot use."""
    sections = {k: dict(v) for k, v in as_sections(variants()[name]).items()}
    objective = sections["objective"]
    unused = WEIGHT_NET_ONLY + (TEACHER_LOSS_ONLY if objective.get("detach_policy", "d2") == "d2" else ())
    for key in unused:
        objective.pop(key, None)
    objective["teacher"] = "uniform"
    return sections


def uniform_control(name: str) -> str:
    """`mate_uniform` when the control trains exactly as it does (every option left is the default's),
    else `<name>_uniform`."""
    if name == "mate" or control_sections(name) == {"objective": {"name": "mate", "teacher": "uniform"}}:
        return "mate_uniform"
    return f"{name}_uniform"


def load_final(runs: Path, names: list[str]) -> dict:
    """{(setting, seed): results.json} of step 5; Incomplete while a run is missing."""
    missing = [f"{n}-s{s}" for n in names for s in range(FINAL_SEEDS) if not (runs / f"{n}-s{s}/results.json").is_file()]
    if missing:
        raise Incomplete(f"step 5 runs not finished: {', '.join(missing)}")
    return {(n, s): json.loads((runs / f"{n}-s{s}/results.json").read_text())
            for n in names for s in range(FINAL_SEEDS)}


def reading(mean: float, std: float) -> str:
    """The protocol's word for a paired difference: a tie when |mean| < its std."""
    if abs(mean) < std or mean == 0:
        return "ties"
    return "wins" if mean > 0 else "loses"


def final_report(runs: Path) -> str:
    """Step 5 in markdown: the test table; the selected MATE minus CE, minus every baseline and minus
    its uniform control, seed by seed; at each exit the best baseline (the highest test mean there,
    the strictest comparison) and the reading (wins / ties / loses); where MATE's mean falls short
    of CE's or a baseline's; and the uniform-control rule, read on validation."""
    chosen = selections(runs)
    mate = chosen["mate"]
    control = uniform_control(mate)
    baselines = [chosen[b] for b in BASELINES]
    names = ["ce"] + baselines + [mate, control]
    results = load_final(runs, names)
    summary = summarise(names, FINAL_SEEDS, results)
    k = len(summary["ce"]["exit_acc"])
    columns = [f"exit {i + 1}" for i in range(k)] + ["ensemble"]

    def mean_of(name: str, col: int) -> float:
        return (summary[name]["exit_acc"][col] if col < k else summary[name]["ensemble_acc"])[0]

    def diff(other: str) -> list[tuple]:
        d = paired_differences(results, mate, other, FINAL_SEEDS)
        return d["exit"] + [d["ensemble"]]

    def cell(stats: tuple) -> str:
        mean, std, up, down = stats
        return f"{mean:+.2f} ± {std:.2f} ({up}↑ {down}↓)"

    out = ["Settings: " + ", ".join(f"{m} = `{s}`" for m, s in chosen.items()) + f"; control = `{control}`.", "",
           f"Test top-1 accuracy (%), mean ± std over seeds 0-{FINAL_SEEDS - 1} (bold: best mean per exit):", "",
           markdown_table(summary), "",
           f"`{mate}` minus each method, seed by seed on test (points: mean ± std of the {FINAL_SEEDS} paired "
           "differences; ↑/↓ = seeds above/below zero):", "",
           "| " + " | ".join([f"{mate} −"] + columns) + " |", "|---|" + "---:|" * len(columns)]
    for other in ["ce"] + baselines + [control]:
        out.append(f"| {other} | " + " | ".join(cell(c) for c in diff(other)) + " |")
    best = [max(baselines, key=lambda b: mean_of(b, col)) for col in range(k + 1)]
    versus_ce, versus_best = diff("ce"), [diff(best[col])[col] for col in range(k + 1)]
    out += ["", "| reading | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns),
            "| against CE | " + " | ".join(f"{reading(*c[:2])} ({c[0]:+.2f} ± {c[1]:.2f})" for c in versus_ce) + " |",
            "| best baseline there (test mean) | " + " | ".join(f"`{b}` {mean_of(b, col):.2f}"
                                                           for col, b in enumerate(best)) + " |",
            "| against the best baseline | " + " | ".join(f"{reading(*c[:2])} ({c[0]:+.2f} ± {c[1]:.2f})"
                                                     for c in versus_best) + " |", ""]
    short = [f"{columns[col]}: {mean_of(mate, col):.2f} against `{o}` {mean_of(o, col):.2f} "
             f"({mean_of(mate, col) - mean_of(o, col):+.2f})"
             for col in range(k) for o in ["ce"] + baselines if mean_of(mate, col) < mean_of(o, col)]
    out.append(f"`{mate}`'s mean is at least CE's and every baseline's at every exit." if not short else
               f"`{mate}`'s mean falls short at {len(short)} (exit, method) pair(s): " + "; ".join(short) + ".")
    val = [results[(mate, s)]["val"]["mean_acc"] - results[(control, s)]["val"]["mean_acc"] for s in range(FINAL_SEEDS)]
    ahead = sum(v > 0 for v in val)
    mean = statistics.fmean(val)
    verdict = "beats" if mean > 0 and ahead >= 4 else "does not beat"
    out += ["", f"Weight network against the uniform control (validation mean over exits, `{mate}` − `{control}`, "
            f"per seed: {', '.join(f'{v:+.2f}' for v in val)}; mean {mean:+.2f}, {ahead} of {FINAL_SEEDS} seeds "
            f"ahead): the weight network **{verdict}** the uniform control (the rule: ahead in the mean and in at "
            "least 4 of 5 seeds)."]
    return "\n".join(out)


def progress(runs: Path) -> str:
    """Each step's archived runs against its planned ones; a step whose plan depends on an unfinished
    step says so."""
    def count(step: str, names: list[str], seeds: int, unknown: int = 0) -> str:
        planned = [f"{n}-s{s}" for n in names for s in range(seeds)]
        missing = [r for r in planned if not (runs / r / "results.json").is_file()]
        more = f" (+ {unknown} not yet named)" if unknown else ""
        head = f"{step}: {len(planned) - len(missing)} of {len(planned)}{more} runs archived"
        return head + (f"; next: {', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}" if missing else "")

    out = [count("step 3", list(STEP3), len(SEEDS))]
    try:
        tuned = strongest_baselines(runs)
    except Incomplete:
        return "\n".join(out + ["step 4: waits for step 3", "step 5: waits for step 4"])
    trials = mate_trials()[1:] + [t for m in tuned for t in baseline_trials(m)[1:]]
    out.append(count("step 4", trials, len(SEEDS), unknown=0 if "mate_combo" in variants() else len(SEEDS)))
    try:
        chosen = selections(runs)
    except Incomplete:
        return "\n".join(out + ["step 5: waits for step 4"])
    out.append(count("step 5", list(chosen.values()) + [uniform_control(chosen["mate"])], FINAL_SEEDS))
    return "\n".join(out)


def explore_report(runs: Path, explore_runs: Path) -> str:
    """The exploratory questions (docs/claim_protocol.md, after step 5), on validation only, each
    against `mate` and the uniform control `mate_uniform`, seeds 0-2, paired: a setting beats the
    control if it is ahead in the mean and in all 3 seeds; and for the teachers barred from their own
    exit, the deep exits gain if the mean of exits 3-4 is above `mate`'s in the mean and in all 3."""
    sources = {**{point: (explore_runs, point) for point in EXPLORE},
               "mate": (runs, "mate"), "mate_uniform": (runs, "mate_uniform")}
    vals = {label: val_results(*where) for label, where in sources.items()}
    for label, by_seed in vals.items():
        if len(by_seed) < len(SEEDS):
            raise Incomplete(f"{label}: seeds {sorted(set(SEEDS) - set(by_seed))} not finished")
    rows = {label: {s: v["mean_acc"] for s, v in by_seed.items()} for label, by_seed in vals.items()}
    out = [score_table(rows, "validation score"), "", exit_table(runs, list(sources), sources), ""]

    def compare(label: str, other: str, what: str, value) -> tuple[float, int, str]:
        diffs = [value(vals[label][s]) - value(vals[other][s]) for s in SEEDS]
        mean, std, ahead, _ = paired_stats(diffs)
        return mean, ahead, (f"{label} − {other}, {what}, per seed: {', '.join(f'{d:+.2f}' for d in diffs)}; "
                             f"mean {mean:+.2f} ± {std:.2f}, {ahead} of {len(SEEDS)} seeds ahead.")

    def verdict(mean: float, ahead: int) -> str:
        return "beats" if mean > 0 and ahead == len(SEEDS) else "does not beat"

    def score_of(v: dict) -> float:
        return v["mean_acc"]

    def deep_of(v: dict) -> float:
        return statistics.fmean(v["exit_acc"][i] for i in DEEP_EXITS)

    for label in EXPLORE:
        mean, ahead, line = compare(label, "mate_uniform", "score", score_of)
        out += [line, f"`{label}`'s weight network **{verdict(mean, ahead)}** the uniform control (the rule: "
                      "ahead in the mean and in all 3 seeds).", compare(label, "mate", "score", score_of)[2]]
        if label == "mate_others":
            mean, ahead, line = compare(label, "mate", "mean of exits 3-4", deep_of)
            gains = "gain" if verdict(mean, ahead) == "beats" else "do not gain"
            out += [line, f"The deep exits **{gains}** from teachers barred from their own exit (the rule: exits "
                          "3-4 ahead of `mate` in the mean and in all 3 seeds)."]
        out.append("")
    out.append("Exploratory: neither question changes the default or step 5's table.")
    return "\n".join(out)


def main() -> None:
    global VARIANTS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=["step3", "step4", "step5", "final", "explore", "progress"])
    parser.add_argument("--runs", type=Path, default=RUNS)
    parser.add_argument("--explore-runs", type=Path, default=EXPLORE_RUNS, help="explore: the sweep's archive")
    parser.add_argument("--variants", type=Path, default=VARIANTS, help="the trials' variants file")
    parser.add_argument("--names", action="store_true", help="print only the names the next step runs")
    parser.add_argument("--exits", action="store_true", help="step3/step4: the runs per exit instead (validation)")
    parser.add_argument("--write-combo", action="store_true", help="step4: add mate_combo to the variants")
    parser.add_argument("--write-control", action="store_true",
                        help="step5: add the selected MATE's uniform control to the variants")
    args = parser.parse_args()
    VARIANTS = args.variants
    runs = args.runs
    try:
        if args.exits and args.step in ("step3", "step4"):
            if args.step == "step3":
                print(exit_table(runs, list(STEP3)))
            else:
                tuned = strongest_baselines(runs)
                print(exit_table(runs, mate_trials() + ["mate_uniform"] + [t for m in tuned for t in baseline_trials(m)]))
        elif args.step == "step3":
            if not args.names:
                print(table(runs, list(STEP3), "method"))
            names = strongest_baselines(runs)
            print(",".join(names) if args.names else f"\nthe two strongest baselines (tuned in step 4): {', '.join(names)}")
        elif args.step == "step4":
            tuned = strongest_baselines(runs)
            if args.write_combo:
                if "mate_combo" in variants():
                    sys.exit("mate_combo is written already")
                source, sections = combo(runs)
                line = json.dumps(sections, separators=(", ", ": ")).replace('"', "")
                with VARIANTS.open("a") as f:
                    f.write(f"# MATE's trial 9, from step 4's scores: {source}\nmate_combo: {line}\n")
                print(f"mate_combo: {line}  ({source})")
                return
            if args.names:
                print(",".join([t for m in tuned for t in baseline_trials(m)[1:]] + mate_trials()[1:]))
                return
            print(table(runs, mate_trials(), "MATE trial"))
            for m in tuned:
                print()
                print(table(runs, baseline_trials(m), f"{m} trial"))
            print()
            for method, setting in selections(runs).items():
                print(f"selected {method}: {setting}")
        elif args.step == "final":
            print(final_report(runs))
        elif args.step == "progress":
            print(progress(runs))
        elif args.step == "explore":
            print(explore_report(runs, args.explore_runs))
        else:
            chosen = selections(runs)
            names = list(chosen.values()) + [uniform_control(chosen["mate"])]
            control = names[-1]
            if control not in variants() and control != "mate_uniform":
                if not args.write_control:
                    raise Incomplete(f"the uniform control {control} is not written yet (step5 --write-control)")
                sections = control_sections(chosen["mate"])
                line = json.dumps(sections, separators=(", ", ": ")).replace('"', "")
                with VARIANTS.open("a") as f:
                    f.write(f"# The uniform-teacher control of the selected MATE (step 5)\n{control}: {line}\n")
            if args.names:
                print(",".join(names))
            else:
                print("step 5 methods:", ", ".join(names))
    except Incomplete as exc:
        print(f"incomplete: {exc}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
