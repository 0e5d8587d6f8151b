"""Shared fixtures: a private pretraining cache, a tiny ViT, and the options of a fast run."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch

from robench import host_memory
from robench.backbone import BackboneSpec

TINY = BackboneSpec(embed_dim=64, depth=2, num_heads=2)


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep every test's pretrained backbones out of the user's cache (one cache per session)."""
    cache = tmp_path_factory.mktemp("robench-cache")
    old = os.environ.get("ROBENCH_CACHE")
    os.environ["ROBENCH_CACHE"] = str(cache)
    yield
    if old is None:
        os.environ.pop("ROBENCH_CACHE", None)
    else:
        os.environ["ROBENCH_CACHE"] = old


@pytest.fixture(autouse=True)
def _no_plugin_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROBENCH_PLUGINS", raising=False)


@pytest.fixture
def cpu_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Distortions chunk CPU batches, as where freed host memory goes back to the OS (a cell run
    in this process earlier may have kept it: then whole batches are used)."""
    monkeypatch.setattr(host_memory, "_applied", None)


@pytest.fixture
def tiny_spec() -> BackboneSpec:
    """A depth-2, width-64 ViT for 32x32 images."""
    return TINY


def fast_run_options(out: Path, **overrides: Any) -> dict[str, Any]:
    """Options of a run that finishes in seconds: tiny ViT, small subsets, few steps."""
    options: dict[str, Any] = dict(
        datasets="shapes", distortions="gaussian_noise", methods="none,finetune", seeds="0,1",
        severities="1,5", steps=3, batch_size=32, max_train=160, max_test=80, pretrain_epochs=1,
        embed_dim=TINY.embed_dim, depth=TINY.depth, num_heads=TINY.num_heads, device="cpu",
        out=out, quiet=True,
    )
    options.update(overrides)
    return options


def fast_run_argv(out: Path, **overrides: Any) -> list[str]:
    """The same fast run as command-line arguments of ``robench run``."""
    options = fast_run_options(out, **overrides)
    flags = {"num_heads": "heads"}
    argv = ["run"]
    for key, value in options.items():
        if value is None:
            continue
        if key == "quiet":
            argv += ["-q"] if value else []
            continue
        argv += [f"--{flags.get(key, key).replace('_', '-')}", str(value)]
    return argv


def uniform_images(batch: int = 4, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Random float images in [0, 1]."""
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    # pyproject's `-n auto` runs one pytest-xdist worker per core: each takes its share of the
    # cores for torch (two threads in each of two workers would oversubscribe a 2-core machine)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, cores // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
