#!/bin/bash
# The main job's wall-clock time, side by side: `mate train` as a new user runs it, once per
# setting and round, alternating, in one invocation (run it on an otherwise idle machine):
#   bash benchmarks/main_job_time.sh RUNS_DIR "SETTING A" "SETTING B" ... [--rounds N] | tee OUTPUT
# A setting is a list of `section.key=value` overrides ("" is the shipped config). Each run is
# timed as a whole by /usr/bin/time (process start to exit: imports, data, training, the final
# test pass, the report), and its results.json's train_time_s (the training loop with validation
# and checkpoints) is printed beside it. The runs (checkpoints included) go to RUNS_DIR; the raw
# outputs of the measurements in docs/benchmarks.md are in docs/results/main_job_time/.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$1; shift
rounds=1
settings=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--rounds" ]; then rounds=$2; shift 2; else settings+=("$1"); shift; fi
done
[ ${#settings[@]} -gt 0 ] || settings=("")
mkdir -p "$out"
uptime
for round in $(seq 1 "$rounds"); do
  for i in "${!settings[@]}"; do
    setting=${settings[$i]}
    run="$out/round$round-setting$i"
    rm -rf "$run"
    echo "=== round $round, setting $i: mate train $setting run.out_dir=$run ($(date -u +%H:%M:%S))"
    # shellcheck disable=SC2086
    /usr/bin/time -f "wall %e s user %U s sys %S s" .venv/bin/mate train $setting "run.out_dir=$run" 2>&1 |
      grep -v "^\s*$" | tail -n 12
    .venv/bin/python - "$run" <<'EOF'
import json, sys
from pathlib import Path
(results,) = Path(sys.argv[1]).glob("*/results.json")
r = json.loads(results.read_text())
print(f"train_time_s {r['train_time_s']:.1f} amp {r['amp']} epochs {r['config']['optim']['epochs']} "
      f"test {' '.join(f'{a:.2f}' for a in r['test']['exit_acc'])}")
EOF
  done
done
uptime
