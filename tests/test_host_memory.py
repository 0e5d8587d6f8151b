"""keep_freed_memory: freed buffers are reused without page faults (glibc), and can be disabled."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest


def _glibc() -> bool:
    try:
        return (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc")
    except (AttributeError, ValueError, OSError):
        return False


pytestmark = pytest.mark.skipif(not _glibc(), reason="mallopt tuning applies to glibc only")

# Page faults per call of a function that, like a batched distortion, fills five 3 MB
# temporaries and a 40 MB one (above glibc's largest mmap threshold, as a 224-px batch is) and
# frees them all (torch's tensors: NumPy asks for huge pages, which hides the faults).
PROBE = """
import resource, sys
import torch
from robench.host_memory import keep_freed_memory
print(keep_freed_memory())

def call():
    temporaries = [torch.ones(3 << 17, dtype=torch.float64) for _ in range(5)] + [torch.ones(5 << 20, dtype=torch.float64)]

for _ in range(5):  # the heap settles into its layout
    call()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    call()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


def _probe(**env: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True,
                         env={**os.environ, **env}).stdout.split()
    return out[0], float(out[1])


def test_freed_buffers_are_reused_without_page_faults() -> None:
    applied, faults = _probe()
    disabled, faults_disabled = _probe(ROBENCH_KEEP_FREED_MEMORY="0")
    assert (applied, disabled) == ("True", "False")
    assert faults_disabled > 10_000  # 55 MB = 14,080 pages, mostly handed back and zero-filled again
    assert faults < 50
