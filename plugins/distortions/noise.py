"""Noise corruptions (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR), with the parameters of ImageNet-C and CIFAR-10-C.

Images with a shorter side of at least 96 px use the ImageNet-C parameters, smaller ones the
CIFAR-10-C parameters (:func:`robench.api.severity_table`).
"""

from __future__ import annotations

import functools
import math

import torch

from robench import cpu_kernels, native
from robench.api import SEVERITY_TABLES, BatchRNG, Distortion, hookimpl
from robench.fused import FusedKernel, tl, triton
from robench_plugins.distortions._device import WholeBatchInC
from robench_plugins.distortions._parametric import MixedPass, OneParameter

# sigma of x + N(0, sigma)
_GAUSSIAN = {"imagenet-c": (0.08, 0.12, 0.18, 0.26, 0.38), "cifar-10-c": (0.04, 0.06, 0.08, 0.09, 0.10)}
# photon count c of Poisson(x * c) / c
_SHOT = {"imagenet-c": (60, 25, 12, 5, 3), "cifar-10-c": (500, 250, 100, 75, 50)}
# fraction of values replaced by 0 or 1
_IMPULSE = {"imagenet-c": (0.03, 0.06, 0.09, 0.17, 0.27), "cifar-10-c": (0.01, 0.02, 0.03, 0.05, 0.07)}
# sigma of x + x * N(0, sigma)
_SPECKLE = {"imagenet-c": (0.15, 0.2, 0.35, 0.45, 0.6), "cifar-10-c": (0.06, 0.1, 0.12, 0.16, 0.2)}


class GaussianNoise(WholeBatchInC, OneParameter):
    """Additive Gaussian pixel noise, clipped to [0, 1] (ImageNet-C / CIFAR-10-C sigmas)."""

    name = "gaussian_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def parameters(self, height: int, width: int) -> tuple[float, ...]:
        return _GAUSSIAN[self.table(height, width)]

    def distort(self, images: torch.Tensor, sigma: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        if native.takes(images):  # the same pixels, drawn and noised in one loop
            return cpu_kernels.noise(cpu_kernels.GAUSSIAN, images, sigma, rng, rng.normal_table())
        return (images + sigma * rng.normal(*images.shape[1:])).clamp_(0.0, 1.0)


class ShotNoise(WholeBatchInC, MixedPass):
    """Photon (Poisson) noise: Poisson(x * c) / c, clipped to [0, 1].

    Sampled exactly by inverse-CDF lookup: inputs are taken on their uint8 levels (as the
    reference, which reads uint8 images), so each value's Poisson rate is one of 256 and its
    cumulative distribution is tabulated once per table; one search serves a batch of mixed
    severities.
    """

    name = "shot_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        photons = _SHOT[self.table(*images.shape[-2:])]
        first_row = self.per_sample([256 * i for i in range(len(photons))], severities, images)
        if native.takes(images):  # the whole of it in one loop
            return cpu_kernels.shot_noise(images, first_row, self.per_sample(photons, severities, images),
                                          _poisson_inverse(photons, images.device), rng)
        rows = (images * 255).round_().to(torch.int32).add_(first_row.to(torch.int32))  # s * 256 + level
        uniform = (rng.bits(*images.shape[1:]) >> 8) & 0xFFFFFF
        counts = _poisson_inverse(photons, images.device)(rows, uniform)
        # a divisor tensor: CUDA would multiply by the reciprocal of a Python scalar
        return (counts.to(images.dtype) / self.per_sample(photons, severities, images)).clamp_(0.0, 1.0)


class ImpulseNoise(WholeBatchInC, OneParameter):
    """Impulse noise: channel values replaced by 0 or 1 with probability c.

    Each channel value is hit independently and turns black or white with equal odds, as
    ``skimage.util.random_noise(mode='s&p')`` in the reference.
    """

    name = "impulse_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def parameters(self, height: int, width: int) -> tuple[int, ...]:
        # hit when the top 24 bits of a hash, a uniform on 2^24 levels, fall below c
        return tuple(round(amount * (1 << 24)) for amount in _IMPULSE[self.table(height, width)])

    def distort(self, images: torch.Tensor, threshold: int | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        if native.takes(images):  # the same pixels, drawn and replaced in one loop
            return cpu_kernels.noise(cpu_kernels.IMPULSE, images, threshold, rng)
        bits = rng.bits(*images.shape[1:])
        hit = (bits >> 8) & 0xFFFFFF < threshold
        salt = (bits & 1).to(images.dtype)  # the lowest bit: 0 or 1 with equal odds
        return torch.where(hit, salt, images)


class SpeckleNoise(WholeBatchInC, OneParameter):
    """Multiplicative Gaussian noise x + x * N(0, c), clipped (the ImageNet-C validation noise)."""

    name = "speckle_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def parameters(self, height: int, width: int) -> tuple[float, ...]:
        return _SPECKLE[self.table(height, width)]

    def distort(self, images: torch.Tensor, sigma: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        if native.takes(images):  # the same pixels, drawn and noised in one loop
            return cpu_kernels.noise(cpu_kernels.SPECKLE, images, sigma, rng, rng.normal_table())
        return (images * (1 + sigma * rng.normal(*images.shape[1:]))).clamp_(0.0, 1.0)


class _PoissonInverse:
    """Exact inverse-CDF sampling of Poisson(level / 255 * photons[s]) from 24-bit uniforms.

    Row ``s * 256 + level`` holds that distribution's CDF as integer thresholds
    ``ceil(cdf * 2^24)``: a uniform ``k / 2^24`` is at least a CDF value exactly when ``k`` is at
    least its threshold, so the sample is the number of thresholds at most ``k``. The thresholds
    are taken from the float64 values ``level + cdf`` (``(level + cdf) - level`` is exact), so
    ``k >= threshold`` is exactly the float64 test ``level + u >= level + cdf``.

    Each row keeps its distinct thresholds below 2^24 with their cumulative counts, and a guide
    gives, per row and per 2^14-wide bucket of ``k``, how many are at most the bucket's start: a
    sample is one guide lookup, a branchless binary search over the few thresholds inside the
    bucket (fewer than ``2^steps``, so ``steps`` halvings find their count) and a count lookup.
    Every query costs the same few gathers (no data-dependent loop, nothing read back to the
    host), 4-5x faster on the CPU than a binary search of the whole table. On a GPU the whole
    search is one fused Triton kernel; on the CPU one loop in C (:mod:`robench.cpu_kernels`) does
    the whole of ``ShotNoise`` (levels, draws, search, division, clamp), walking the few thresholds in
    a bucket one by one instead (3x faster there than the fixed halvings; the same counts), on
    tables of its own that fit a core's cache better: a guide of ``CPU_GUIDE_BITS`` (int16
    positions within the row: 256 KB a severity, against the 10-bit int32 guide's 1 MB) and each
    position's threshold and count side by side (``walk``), so that a walk's answer is in the line
    of its last compare.
    """

    GUIDE_BITS = 10
    CPU_GUIDE_BITS = 9

    def __init__(self, photons: tuple[int, ...], device: torch.device) -> None:
        distinct, counts = [], []
        for count in photons:
            for row in _poisson_thresholds(count):
                values, repeats = torch.unique_consecutive(row[row < 1 << 24], return_counts=True)
                distinct.append(values)
                counts.append(torch.cat([torch.zeros(1, dtype=torch.int64), repeats.cumsum(0)]))
        shift = 24 - self.GUIDE_BITS
        starts = torch.arange(1 << self.GUIDE_BITS, dtype=torch.int64) << shift
        guide = torch.stack([torch.searchsorted(v, starts, right=True) for v in distinct])
        ends = torch.stack([torch.searchsorted(v, starts + (1 << shift) - 1, right=True) for v in distinct])
        self.steps = max(1, math.ceil(math.log2(int((ends - guide).max()) + 1)))
        # Rows padded with thresholds that no k reaches, so the search never leaves its row.
        width = max(len(v) for v in distinct) + (1 << self.steps)
        thresholds = torch.full((len(distinct), width), 1 << 24, dtype=torch.int32)
        cumulative = torch.zeros((len(distinct), width + 1), dtype=torch.int32)
        for row, (values, cum) in enumerate(zip(distinct, counts)):
            thresholds[row, : len(values)] = values
            cumulative[row, : len(cum)] = cum
            cumulative[row, len(cum) :] = cum[-1]
        self.thresholds = thresholds.flatten().to(device)
        self.cumulative = cumulative.flatten().to(device)
        self.guide = (guide + torch.arange(len(distinct))[:, None] * width).to(torch.int32).flatten().to(device)
        self.width = self.cpu_guide = self.walk = None
        if device.type == "cpu":  # row r's positions r * width + i: (threshold, count) pairs, int16 guide
            self.width = width
            if width >= 1 << 15:
                raise AssertionError(f"Poisson rows of {width} thresholds do not fit the int16 guide")
            self.walk = torch.stack([thresholds, cumulative[:, :width]], dim=-1).flatten()
            shift = 24 - self.CPU_GUIDE_BITS
            starts = torch.arange(1 << self.CPU_GUIDE_BITS, dtype=torch.int64) << shift
            self.cpu_guide = torch.stack([torch.searchsorted(v, starts, right=True) for v in distinct])
            self.cpu_guide = self.cpu_guide.to(torch.int16).flatten()

    def __call__(self, rows: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """Samples (int32, ``k``'s shape) for int32 ``rows`` (``s * 256 + level``) and int32
        uniforms ``k`` in [0, 2^24) of the same shape."""
        rows, flat = rows.reshape(-1), k.reshape(-1)
        if _POISSON_KERNEL.available(k.device):
            out = torch.empty_like(flat)
            if _POISSON_KERNEL.launch(_poisson_kernel, flat.numel(), 1024, rows.contiguous(), flat.contiguous(),
                                      self.guide, self.thresholds, self.cumulative, out, flat.numel(),
                                      GUIDE_BITS=self.GUIDE_BITS, STEPS=self.steps):
                return out.view_as(k)
        elif native.available(k.device):
            return cpu_kernels.poisson(rows, flat, self).view_as(k)
        pos = self.guide.index_select(0, (flat >> (24 - self.GUIDE_BITS)) + rows * (1 << self.GUIDE_BITS))
        for step in reversed(range(self.steps)):
            half = 1 << step
            pos.add_(self.thresholds.index_select(0, pos + (half - 1)) <= flat, alpha=half)
        # the count table's rows are one longer: pos - rows * width + rows * (width + 1)
        return self.cumulative.index_select(0, pos + rows).view_as(k)


_POISSON_KERNEL = FusedKernel("Poisson sampler")

if triton is not None:

    @triton.jit(do_not_specialize=["total"])
    def _poisson_kernel(rows_ptr, k_ptr, guide_ptr, thresholds_ptr, cumulative_ptr, out_ptr, total,
                        GUIDE_BITS: tl.constexpr, STEPS: tl.constexpr, BLOCK: tl.constexpr):
        """:meth:`_PoissonInverse.__call__`'s search, one element per lane."""
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < total
        rows = tl.load(rows_ptr + offsets, mask=mask, other=0)
        k = tl.load(k_ptr + offsets, mask=mask, other=0)
        pos = tl.load(guide_ptr + (k >> (24 - GUIDE_BITS)) + rows * (1 << GUIDE_BITS), mask=mask, other=0)
        for i in tl.static_range(STEPS):
            half = 1 << (STEPS - 1 - i)
            above = tl.load(thresholds_ptr + pos + (half - 1), mask=mask, other=0) <= k
            pos += tl.where(above, half, 0)
        tl.store(out_ptr + offsets, tl.load(cumulative_ptr + pos + rows, mask=mask, other=0), mask=mask)


@functools.lru_cache(maxsize=16)
def _poisson_inverse(photons: tuple[int, ...], device: torch.device) -> _PoissonInverse:
    """The sampler for these photon counts, its tables on ``device`` (built once)."""
    return _PoissonInverse(photons, device)


def _poisson_thresholds(photons: int) -> torch.Tensor:
    """``ceil(cdf * 2^24)`` of Poisson(l / 255 * photons) for each level l, as int64
    ``(256, width)``; the last column is 2^24 (the tail beyond is negligible)."""
    rates = torch.arange(256, dtype=torch.float64) / 255 * photons
    width = int(photons + 12 * math.sqrt(photons) + 16)
    k = torch.arange(width, dtype=torch.float64)
    log_pmf = k * torch.log(rates[:, None].clamp_min(1e-300)) - rates[:, None] - torch.lgamma(k + 1)
    cdf = torch.exp(log_pmf).cumsum(1).clamp_(max=1.0)
    level = torch.arange(256, dtype=torch.float64)[:, None]
    thresholds = torch.ceil(((cdf + level) - level) * (1 << 24)).to(torch.int64)
    if not bool((thresholds[:, -1] == 1 << 24).all()):
        raise AssertionError(f"Poisson table for {photons} photons is too short")
    return thresholds


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [GaussianNoise, ShotNoise, ImpulseNoise, SpeckleNoise]
