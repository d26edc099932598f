"""A pytest plugin: the CPU seconds each test costs, its own and its finished subprocesses'.

CPU time, unlike wall time, hardly depends on what else the machine runs, so it shows where the
suite's work is even on a busy machine. Use it in one process:
  .venv/bin/python -m pytest -q -p no:xdist -p cpu_per_test  (with PYTHONPATH=benchmarks)
It writes cpu_per_test.csv (test, phase, cpu seconds, wall seconds) and prints the per-file sums.
Processes a test leaves running (a Ray runtime until its shutdown) count when they are reaped.
"""
import csv
import resource
import time
from collections import defaultdict

import pytest

_rows: list[tuple[str, str, float, float]] = []


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _timed(item, phase):
    c, w = _cpu(), time.perf_counter()
    yield
    _rows.append((item.nodeid, phase, _cpu() - c, time.perf_counter() - w))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    yield from _timed(item, "setup")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    yield from _timed(item, "call")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item):
    yield from _timed(item, "teardown")


def pytest_terminal_summary(terminalreporter):
    with open("cpu_per_test.csv", "w", newline="") as f:
        csv.writer(f).writerows([("test", "phase", "cpu_s", "wall_s"), *_rows])
    per_file = defaultdict(float)
    for nodeid, _, cpu, _ in _rows:
        per_file[nodeid.split("::")[0]] += cpu
    terminalreporter.write_sep("=", f"CPU seconds per file (total {sum(per_file.values()):.1f})")
    for name, cpu in sorted(per_file.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{cpu:8.1f}  {name}")
