"""Benchmark helpers: real images, a summary of images/s and ratios printed after the run.

Run with ``pytest benchmarks/`` (not part of the test command: they measure, never assert speed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from robench.host_memory import keep_freed_memory

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

# As robench's cell workers run (the references run in this same process, under the same
# allocator); ROBENCH_KEEP_FREED_MEMORY=0 measures without.
keep_freed_memory()

RATES: dict[tuple[str, ...], dict[str, float]] = {}


def dropping(work: Callable[[], object]) -> Callable[[], None]:
    """``work`` with its result dropped as it returns, for ``benchmark.pedantic``: pytest-benchmark
    keeps a timed round's result until the next round has run, and with a 154 MB batch still
    held glibc cannot place the next one in freed memory (a 64-byte-aligned request needs a little
    more than the freed chunk of the same size), so some rounds, not others, took fresh pages from
    the kernel (37,632 page faults, +35 ms at 224 px: pixelate 20 -> 55 ms). Each round then runs
    as its warm-up rounds did and as robench's runner distorts batches, the last one released."""

    def run() -> None:
        work()

    return run


def record(key: tuple[str, ...], **rates: float) -> None:
    """Keep images/s (or steps/s) figures of one case for the summary table."""
    RATES.setdefault(key, {}).update(rates)


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: no error where it is not installed
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """No pytest-xdist workers for ``-n auto`` (pyproject's addopts): benchmarks time one process
    on the whole machine (pytest-benchmark times nothing in workers)."""
    return 0


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not RATES:
        return
    terminalreporter.section("throughput summary (per second; ratio = robench / reference or finetune)")
    for key in sorted(RATES):
        values = dict(RATES[key])
        if "robench" in values and "reference" in values:
            values["ratio"] = values["robench"] / values["reference"]
        baseline = RATES.get((key[0], "finetune"), {}).get("images_per_s")
        if key[0] == "train" and baseline:
            values["ratio_to_finetune"] = values["images_per_s"] / baseline
        cells = "  ".join(f"{k}={v:,.3f}" if v < 10 else f"{k}={v:,.1f}" for k, v in sorted(values.items()))
        terminalreporter.write_line(f"{' '.join(key):40s} {cells}")
