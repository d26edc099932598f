#!/bin/bash
# The runs of docs/claim_protocol.md, steps 3-5, as resumable comparisons: re-run to continue.
# Every finished run's results.json/metrics.jsonl/config.yaml/split.json is archived in
# docs/results/claim/runs (commit it); runs found there are not trained again.
#   bash scripts/claim_grid.sh step3+mate     # step 3 and MATE's step-4 trials, one pool
#   bash scripts/claim_grid.sh step4          # step 4: the two strongest baselines' trials, MATE's trial 9
#   bash scripts/claim_grid.sh step5          # step 5: the final table, seeds 0-4
#   bash scripts/claim_grid.sh explore        # the exploratory questions, once step 5 is complete
#   bash scripts/claim_grid.sh all            # each of the above in turn (what is archived is skipped)
set -euo pipefail
SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.."
RUNS=${CLAIM_RUNS:-runs/claim}  # the training runs, checkpoints included (not committed)
common=(--config fashion_mnist_claim --variants claim_candidates --workers 2 --runs "$RUNS"
        --archive docs/results/claim/runs)
STEP3=ce,mate,byot,byot_reimpl,phuong,eed,beed,sdn,okddip,mate_uniform,ce_ge
MATE_TRIALS=mate_mix,mate_decay,mate_conf,mate_rev,mate_tkd0,mate_ge,mate_deeper
case "${1:-}" in
  step3+mate)
    .venv/bin/mate compare "${common[@]}" --methods "$STEP3,$MATE_TRIALS" --seeds 3 --out docs/results/claim/grid
    .venv/bin/mate compare "${common[@]}" --methods "$STEP3" --seeds 3 --out docs/results/claim/defaults ;;
  step4)  # the two strongest baselines' trials (needs step 3), then MATE's trial 9 (needs trials 1-8)
    # (once trial 9 is written, --names lists it with the others: one comparison runs them all)
    .venv/bin/mate compare "${common[@]}" --methods "$(.venv/bin/python scripts/claim_select.py step4 --names)" \
        --seeds 3 --out docs/results/claim/tuning
    if ! grep -q '^mate_combo:' src/mate/configs/claim_candidates.yaml; then
      .venv/bin/python scripts/claim_select.py step4 --write-combo
      .venv/bin/mate compare "${common[@]}" --methods "$(.venv/bin/python scripts/claim_select.py step4 --names)" \
          --seeds 3 --out docs/results/claim/tuning
    fi ;;
  step5)  # every method at its selected setting, seeds 0-4 (seeds 3 and 4 are new)
    .venv/bin/python scripts/claim_select.py step5 --write-control > /dev/null
    methods=$(.venv/bin/python scripts/claim_select.py step5 --names)
    .venv/bin/mate compare "${common[@]}" --methods "$methods" --seeds 5 --out docs/results/claim/final
    # the budgeted reading's inputs, kept in the archive while the checkpoints exist (nothing is shown)
    .venv/bin/python scripts/claim_budget.py --runs "$RUNS" --keep-only ;;
  explore)  # after step 5 only (docs/claim_protocol.md): the two exploratory questions, validation
    .venv/bin/python scripts/claim_select.py final > /dev/null
    .venv/bin/mate sweep --config fashion_mnist_claim --points scripts/claim_explore.yaml \
        --seeds 3 --workers 2 --out docs/results/claim/explore --runs "${CLAIM_EXPLORE_RUNS:-runs/claim_explore}" \
        --archive docs/results/claim/explore/runs ;;
  all)
    for step in step3+mate step4 step5 explore; do bash "$SELF" "$step"; done ;;
  *) echo "usage: $0 step3+mate|step4|step5|explore|all"; exit 2 ;;
esac
