"""shot_noise: its exact Poisson sampler, against the threshold tables and scipy's Poisson."""

from __future__ import annotations

import inspect
import textwrap

import pytest
import scipy.stats
import torch

from robench import native
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions.noise import _SHOT, ShotNoise, _poisson_inverse, _poisson_thresholds

from triton_interpreter import run_interpreted


def check_every_step(table: str, device: str = "cpu") -> None:
    """The sample is a step function of k that steps at each threshold: checking k = t - 1 and
    k = t for every threshold t of every row (and both ends) checks every k."""
    photons = _SHOT[table]
    sampler = _poisson_inverse(photons, torch.device(device))
    for index, count in enumerate(photons):
        thresholds = _poisson_thresholds(count)  # (256, width)
        below = thresholds.clamp(max=(1 << 24) - 1)
        k = torch.cat([below, below - 1, torch.zeros(256, 1, dtype=torch.int64),
                       torch.full((256, 1), (1 << 24) - 1)], dim=1).clamp_(min=0)
        expected = torch.searchsorted(thresholds, k, right=True)
        rows = (index * 256 + torch.arange(256, dtype=torch.int32))[:, None].expand_as(k)
        got = sampler(rows.contiguous().to(device), k.to(torch.int32).to(device))
        assert torch.equal(got.cpu().to(torch.int64), expected), (table, count)


@pytest.mark.parametrize("table", ["cifar-10-c", "imagenet-c"])
@pytest.mark.parametrize("path", ["C kernel", "torch"])
def test_sampler_counts_the_thresholds_at_most_k_at_every_step(monkeypatch, table: str, path: str) -> None:
    if path == "torch":
        monkeypatch.setenv("ROBENCH_FUSED", "0")
    elif not native.available(torch.device("cpu")):
        pytest.skip("the C kernels are not available here")
    check_every_step(table)


def test_the_fused_sampler_counts_the_same_in_tritons_interpreter() -> None:
    script = textwrap.dedent("""
        from __future__ import annotations

        import torch
        from robench_plugins.distortions import noise
        from robench_plugins.distortions.noise import _SHOT, _poisson_inverse, _poisson_thresholds

        noise._POISSON_KERNEL.available = lambda device: True
    """) + inspect.getsource(check_every_step) + textwrap.dedent("""
        check_every_step("imagenet-c")  # the same kernel serves both tables; this one is smaller
        assert not noise._POISSON_KERNEL.failed
        print("fused sampler exact")
    """)
    run_interpreted(script, "fused sampler exact")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("table", ["cifar-10-c", "imagenet-c"])
def test_the_gpu_sampler_counts_the_thresholds_at_every_step(table: str) -> None:
    check_every_step(table, "cuda")


@pytest.mark.parametrize(("level", "severity"), [(3, 1), (128, 3), (255, 5)])
def test_counts_follow_scipy_poisson(level: int, severity: int) -> None:
    images = torch.full((64, 3, 32, 32), level / 255)
    photons = _SHOT["cifar-10-c"][severity - 1]
    out = ShotNoise()(images, severity, BatchRNG(sample_seeds(1, torch.arange(64))))
    counts = (out * photons).round().to(torch.int64).flatten()
    rate = level / 255 * photons
    unclipped = counts < photons  # the output clips at 1, i.e. at `photons` counts
    observed = torch.bincount(counts[unclipped], minlength=photons).double()
    expected = torch.from_numpy(scipy.stats.poisson.pmf(range(photons), rate)) * counts.numel()
    n = counts.numel()
    # every count's frequency within 5 binomial standard deviations (plus one) of scipy's pmf
    spread = 5 * torch.sqrt(expected * (1 - expected / n)) + 1
    assert bool(((observed - expected).abs() <= spread).all())
    if scipy.stats.poisson.sf(photons - 1, rate) < 1e-9:  # no clipping to speak of: mean = rate
        assert abs(float(counts.double().mean()) - rate) < 5 * (rate / n) ** 0.5
