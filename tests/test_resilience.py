"""A run never loses work: SIGKILL at any point, failing cells, two processes on one directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import fast_run_argv

ROBENCH = str(Path(sys.executable).with_name("robench"))
GRID = dict(seeds="0,1", methods="none,finetune", distortions="gaussian_noise,gaussian_blur")  # 8 cells

FAULTY_PLUGIN = '''
import os
import torch
from robench.api import Method, clip_and_step, hookimpl, make_optimizer

class Boom(Method):
    """Raises on seed 1 while ROBENCH_TEST_BOOM is set."""
    name = "boom"
    def fit(self, ctx):
        if ctx.seed == 1 and os.environ.get("ROBENCH_TEST_BOOM"):
            raise RuntimeError("boom on seed 1")
        return ctx.backbone

class NanLoss(Method):
    """Its loss turns NaN at the first step."""
    name = "nan_loss"
    def fit(self, ctx):
        model = ctx.backbone.train()
        optimizer = make_optimizer(model, 1e-3)
        for batch in ctx.batches():
            loss = model(batch.images).sum() * float("nan")
            clip_and_step(loss, model, optimizer)
        return model

@hookimpl
def robench_methods():
    return [Boom, NanLoss]
'''


def cells(out: Path) -> list[Path]:
    return sorted((out / "cells").rglob("seed-[0-9].json")) if (out / "cells").exists() else []


def command(out: Path, cache: Path, **extra) -> list[str]:
    return [ROBENCH, *fast_run_argv(out, cache_dir=cache, **{**GRID, **extra})]


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The leaderboard of an uninterrupted run."""
    root = tmp_path_factory.mktemp("reference")
    subprocess.run(command(root / "run", root / "cache"), check=True, capture_output=True, timeout=600)
    return (root / "run" / "leaderboards" / "shapes.csv").read_bytes()


def kill_when(cmd: list[str], condition, timeout: float = 300) -> None:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while not condition() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run finished before it could be killed"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_sigkill_at_several_points_then_resume_gives_the_same_leaderboard(reference: bytes, tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = command(out, cache)
    kill_when(cmd, lambda: (out / "manifest.json").exists())  # during pretraining
    assert not list(cache.rglob("*.safetensors")) and not cells(out)
    kill_when(cmd, lambda: len(cells(out)) >= 2)
    first = len(cells(out))
    kill_when(cmd, lambda: len(cells(out)) >= first + 3)
    assert len(cells(out)) < 8
    finished = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stderr
    assert len(cells(out)) == 8
    assert (out / "leaderboards" / "shapes.csv").read_bytes() == reference
    assert not list(out.rglob("*.tmp"))  # what killed writers left was cleaned up


def test_two_processes_on_one_directory_compute_each_cell_once(reference: bytes, tmp_path: Path) -> None:
    out, cache = tmp_path / "run", tmp_path / "cache"
    cmd = command(out, cache)
    subprocess.run(cmd[:2] + ["--dry-run"] + cmd[2:], check=True, capture_output=True)
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    second = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    outputs = [p.communicate(timeout=600)[0] for p in (first, second)]
    assert first.returncode == second.returncode == 0
    computed = [int(o.rsplit("(", 1)[1].split(" cells computed")[0]) for o in outputs]
    assert sum(computed) == 8, computed
    assert (out / "leaderboards" / "shapes.csv").read_bytes() == reference


def test_failing_cells_are_isolated_recorded_and_retried(tmp_path: Path) -> None:
    plugin = tmp_path / "faulty.py"
    plugin.write_text(FAULTY_PLUGIN)
    out = tmp_path / "run"
    cmd = [ROBENCH, *fast_run_argv(out, methods="none,boom,nan_loss", seeds="0,1")] + ["--plugin", str(plugin)]
    env = {**os.environ, "ROBENCH_TEST_BOOM": "1"}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert first.returncode == 1
    assert "Traceback" not in first.stderr
    assert "failed: shapes/gaussian_noise/boom/seed=1: RuntimeError: boom on seed 1" in first.stdout
    assert "failed: shapes/gaussian_noise/nan_loss/seed=0: FloatingPointError: loss became nan" in first.stdout
    record = json.loads((out / "cells/shapes/gaussian_noise/boom/seed-1.failed.json").read_text())
    assert record["error"] == "RuntimeError: boom on seed 1" and "raise RuntimeError" in record["traceback"]
    assert len(cells(out)) == 3  # none x2, boom seed 0
    table = (out / "leaderboards" / "shapes.csv").read_text()
    assert ",boom," in table and ",nan_loss," not in table

    status = subprocess.run([ROBENCH, "status", str(out), "--plugin", str(plugin)], capture_output=True, text=True)
    assert "6 cells: 3 done, 3 failed, 0 running, 0 pending" in status.stdout
    again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 1 and "(0 cells computed, 3 reused, 3 failed)" in again.stdout

    fixed = {k: v for k, v in os.environ.items() if k != "ROBENCH_TEST_BOOM"}
    retried = subprocess.run(cmd + ["--retry-failed"], capture_output=True, text=True, env=fixed, timeout=600)
    assert retried.returncode == 1  # nan_loss still fails; boom is fixed
    assert "(3 cells computed" in retried.stdout and "nan_loss" in retried.stdout and "boom/seed=1" not in retried.stdout
    assert not (out / "cells/shapes/gaussian_noise/boom/seed-1.failed.json").exists()
    assert len(cells(out)) == 4
