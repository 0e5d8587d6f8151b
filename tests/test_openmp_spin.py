"""Importing robench before torch shortens OpenMP's idle spin, unless the user chose one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SHOW = "import os, sys; {first}; print(os.environ.get('GOMP_SPINCOUNT'))"


def _run(first: str, **env: str) -> str:
    environment = {k: v for k, v in os.environ.items() if k != "GOMP_SPINCOUNT"} | env
    result = subprocess.run([sys.executable, "-c", SHOW.format(first=first)], capture_output=True, text=True,
                            env=environment, timeout=120, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize(("first", "env", "expected"), [
    ("import robench", {}, "30000"),  # before torch: set
    ("import robench", {"GOMP_SPINCOUNT": "7"}, "7"),  # the user's value stays
    ("import torch; import robench", {}, "None"),  # torch's OpenMP already read it: left alone
])
def test_spin_count(first: str, env: dict, expected: str) -> None:
    assert _run(first, **env) == expected

