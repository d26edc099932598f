#!/bin/bash
# The runs of docs/claim_protocol.md, steps 3-5, as resumable comparisons: re-run to continue.
# Every finished run's results.json/metrics.jsonl/config.yaml/split.json is archived in
# docs/results/claim/runs (commit it); runs found there are not trained again.
#   bash scripts/claim_grid.sh step3+mate     # step 3 and MATE's step-4 trials, one pool
#   bash scripts/claim_grid.sh baselines      # step 4: the two strongest baselines' trials
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${CLAIM_RUNS:-/work/runs_claim/defaults}
common=(--config fashion_mnist_claim --variants claim_candidates --workers 2 --runs "$RUNS"
        --archive docs/results/claim/runs)
STEP3=ce,mate,byot,byot_reimpl,phuong,eed,beed,sdn,okddip,mate_uniform,ce_ge
MATE_TRIALS=mate_mix,mate_decay,mate_conf,mate_rev,mate_tkd0,mate_ge,mate_deeper
case "${1:-}" in
  step3+mate)
    .venv/bin/mate compare "${common[@]}" --methods "$STEP3,$MATE_TRIALS" --seeds 3 --out docs/results/claim/grid
    .venv/bin/mate compare "${common[@]}" --methods "$STEP3" --seeds 3 --out docs/results/claim/defaults ;;
  baselines)
    best=$(.venv/bin/python scripts/claim_defaults.py | sed -n 's/^the two strongest baselines (tuned in step 4): //p')
    [ -n "$best" ] || { echo "step 3 is not finished"; exit 1; }
    trials=$(.venv/bin/python - "$best" <<'PY'
import sys, yaml
names = [n.strip() for n in sys.argv[1].split(",")]
variants = yaml.safe_load(open("configs/claim_candidates.yaml"))
prefix = {"byot": "byot_kd", "byot_reimpl": "byot_reimpl_kd", "phuong": "phuong_kd", "eed": "eed_kd",
          "okddip": "okddip_kd", "beed": "beed_a", "sdn": "sdn_c"}
print(",".join(v for n in names for v in variants if v.startswith(prefix[n])
               and (n != "byot" or not v.startswith("byot_reimpl"))))
PY
)
    echo "tuning $best: $trials"
    .venv/bin/mate compare "${common[@]}" --methods "$trials" --seeds 3 --out docs/results/claim/tuning ;;
  *) echo "usage: $0 step3+mate|baselines"; exit 2 ;;
esac
