#!/bin/bash
# Wall-clock and CPU time of the whole test suite, run sequentially and on pytest-xdist workers,
# one after another in one invocation (run it on an otherwise idle machine):
#   bash benchmarks/test_suite_time.sh ["" "-n 2 --dist loadfile" "-n 3 --dist loadfile"]
# Raw outputs: docs/results/test_suite/.
cd "$(dirname "$0")/.."
modes=("$@")
[ ${#modes[@]} -gt 0 ] || modes=("" "-n 2 --dist loadfile")
uptime
for mode in "${modes[@]}"; do
  echo "=== pytest -q $mode $(date)"
  # shellcheck disable=SC2086
  /usr/bin/time -f "wall %e s user %U s sys %S s" .venv/bin/python -m pytest -q $mode -p no:cacheprovider \
      --durations=20 2>&1 | grep -v "^\.\.\.\.\.\.\.\.\.\."
done
uptime
