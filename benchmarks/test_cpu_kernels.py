"""The CPU kernels in C (``robench.cpu_kernels``) against the torch paths they replace, in one run.

Each distortion that has a whole-distortion kernel, and ``BatchRNG.normal``, runs on a batch of
256 real images at 32 and 224 px twice: with the kernels (``c``) and with ``ROBENCH_FUSED=0``
(``torch``); the summary prints both images/s and their ratio. Beside them, one copy of the
batch (``memory pass``: read once, written once) bounds what any distortion that reads its input
and writes its output can reach on this machine: ``clone`` into a new tensor, as a distortion's
output is (under this run's allocator setting, ``robench.host_memory``, its buffer is reused), and
``copy_`` into the same tensor every time.
"""

from __future__ import annotations

import pytest
import torch

from robench import native
from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds

from conftest import dropping, record
from reference import real_images

BATCH = 256
SEVERITY = 3
KERNELS = ("gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "pixelate", "jpeg_compression",
           "brightness", "saturate", "contrast", "fog", "frost", "gaussian_blur", "defocus_blur", "motion_blur", "snow",
           "spatter")
REGISTRY = Registry(entry_points=False)


@pytest.fixture(scope="module", params=[32, 224])
def batch(request: pytest.FixtureRequest) -> torch.Tensor:
    images = real_images(60, request.param)
    return images.repeat(BATCH // 60 + 1, 1, 1, 1)[:BATCH].contiguous()


@pytest.fixture(autouse=True)
def _needs_the_kernels() -> None:
    if not native.available(torch.device("cpu")):
        pytest.skip("the C kernels are not available here (no C compiler?)")


def _measure(benchmark, batch: torch.Tensor, group: str, name: str, work, monkeypatch, path: str) -> None:
    if path == "torch":
        monkeypatch.setenv("ROBENCH_FUSED", "0")
    benchmark.group = f"{group} {batch.shape[-1]}px"
    benchmark.pedantic(dropping(work), rounds=5 if batch.shape[-1] == 32 else 3, warmup_rounds=3)  # the heap settles
    rate = BATCH / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = rate
    key = "robench" if path == "c" else "reference"  # the summary's ratio: C / torch
    record((name, f"{batch.shape[-1]}px", "C / torch"), **{key: rate})


@pytest.mark.parametrize("path", ["c", "torch"])
@pytest.mark.parametrize("name", KERNELS)
def test_distortion(benchmark, batch: torch.Tensor, monkeypatch, name: str, path: str) -> None:
    distortion = REGISTRY.get("distortion", name)()
    seeds = sample_seeds(0, torch.arange(BATCH))
    _measure(benchmark, batch, name, name, lambda: distortion(batch, SEVERITY, BatchRNG(seeds)), monkeypatch, path)


@pytest.mark.parametrize("path", ["c", "torch"])
def test_normal_draw(benchmark, batch: torch.Tensor, monkeypatch, path: str) -> None:
    rng = BatchRNG(sample_seeds(0, torch.arange(BATCH)))
    _measure(benchmark, batch, "BatchRNG.normal", "BatchRNG.normal", lambda: rng.normal(*batch.shape[1:]),
             monkeypatch, path)


@pytest.mark.parametrize("how", ["clone", "copy_"])
def test_memory_pass(benchmark, batch: torch.Tensor, how: str) -> None:
    """One read and one write of the batch: the ceiling of a one-pass distortion here."""
    benchmark.group = f"memory pass {batch.shape[-1]}px"
    target = torch.empty_like(batch)
    work = batch.clone if how == "clone" else lambda: target.copy_(batch)
    benchmark.pedantic(dropping(work), rounds=5, warmup_rounds=3)
    record((f"memory pass ({how})", f"{batch.shape[-1]}px"), images_per_s=BATCH / benchmark.stats.stats.median)
