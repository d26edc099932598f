"""tune_cpu_allocator: no page faults per forward pass once freed feature maps are kept for reuse."""
import os
import subprocess
import sys

import pytest

PROBE = r"""
import resource, sys, torch
import mate
applied = mate.tune_cpu_allocator() if sys.argv[1] == "tune" else False
if len(sys.argv) > 2:
    print(applied, 0)
    raise SystemExit
torch.set_num_threads(1)
model = mate.create_model("resnet18", num_classes=10, in_channels=1, width=16, input_size=28).eval()
x = torch.randn(128, 1, 28, 28)
with torch.inference_mode():
    for _ in range(6):  # the heap grows to its working size
        model(x)
    counts = []
    for _ in range(7):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        model(x)
        counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    # the median pass: an occasional pass that grows the heap (fragmentation) does not count
    faults = sorted(counts)[3]
print(applied, faults)
"""

linux_glibc = pytest.mark.skipif(not sys.platform.startswith("linux") or os.confstr("CS_GNU_LIBC_VERSION") is None,
                                 reason="glibc malloc only")


def _probe(mode, *more, **env):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MATE_TUNE_MALLOC", "LD_PRELOAD")}
    out = subprocess.run([sys.executable, "-c", PROBE, mode, *more], env={**clean, **env}, capture_output=True,
                         text=True, check=True).stdout.split()
    return out[0] == "True", float(out[1])


@linux_glibc
def test_tuned_allocator_removes_the_page_faults_of_each_forward():
    applied, tuned = _probe("tune")
    assert applied
    assert tuned < 20  # of the thousands a pass would take, none is left (0 where measured)
    # glibc's defaults map and unmap every large feature map: 1,600-5,300 faults per pass where measured.
    # Its dynamic mmap threshold can also settle, in the odd process, so that the heap keeps them all
    # (none per pass), so the default is shown to fault in the worst of three processes.
    defaults = [_probe("default")[1] for _ in range(3)]
    assert max(defaults) > 1000, defaults


@linux_glibc
@pytest.mark.parametrize("env", [{"MATE_TUNE_MALLOC": "0"}, {"MALLOC_MMAP_THRESHOLD_": "1000000"},
                                 {"MALLOC_TRIM_THRESHOLD_": "1000000"}])
def test_a_choice_already_made_is_respected(env):
    applied, _ = _probe("tune", "no-model", **env)
    assert not applied
