"""Run a script under Triton's interpreter (``TRITON_INTERPRET=1``, set before Triton loads), so
the fused GPU kernels run on the CPU and can be compared with their torch paths here."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest


def run_interpreted(script: str, done_marker: str) -> None:
    """Run ``script`` (dedented) in a fresh interpreter; fail with its stderr unless it exits 0
    and prints ``done_marker``."""
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done_marker in done.stdout, done.stdout[-1000:]
