"""Noise corruptions (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR), with the parameters of ImageNet-C and CIFAR-10-C.

Images with a shorter side of at least 96 px use the ImageNet-C parameters, smaller ones the
CIFAR-10-C parameters (:func:`robench.api.severity_table`).
"""

from __future__ import annotations

import math

import torch

from robench.api import SEVERITY_TABLES, BatchRNG, Distortion, hookimpl
from robench_plugins.distortions._parametric import OneParameter

# sigma of x + N(0, sigma)
_GAUSSIAN = {"imagenet-c": (0.08, 0.12, 0.18, 0.26, 0.38), "cifar-10-c": (0.04, 0.06, 0.08, 0.09, 0.10)}
# photon count c of Poisson(x * c) / c
_SHOT = {"imagenet-c": (60, 25, 12, 5, 3), "cifar-10-c": (500, 250, 100, 75, 50)}
# fraction of values replaced by 0 or 1
_IMPULSE = {"imagenet-c": (0.03, 0.06, 0.09, 0.17, 0.27), "cifar-10-c": (0.01, 0.02, 0.03, 0.05, 0.07)}
# sigma of x + x * N(0, sigma)
_SPECKLE = {"imagenet-c": (0.15, 0.2, 0.35, 0.45, 0.6), "cifar-10-c": (0.06, 0.1, 0.12, 0.16, 0.2)}


class GaussianNoise(OneParameter):
    """Additive Gaussian pixel noise, clipped to [0, 1] (ImageNet-C / CIFAR-10-C sigmas)."""

    name = "gaussian_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def parameters(self, height: int, width: int) -> tuple[float, ...]:
        return _GAUSSIAN[self.table(height, width)]

    def distort(self, images: torch.Tensor, sigma: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        return (images + sigma * rng.normal(*images.shape[1:])).clamp_(0.0, 1.0)


class ShotNoise(Distortion):
    """Photon (Poisson) noise: Poisson(x * c) / c, clipped to [0, 1].

    Sampled exactly by inverse-CDF lookup: inputs are taken on their uint8 levels (as the
    reference, which reads uint8 images), so each value's Poisson rate is one of 256 and its
    cumulative distribution is tabulated once per table; one search serves a batch of mixed
    severities.
    """

    name = "shot_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        return self._shot(images, torch.full((images.shape[0],), severity), rng)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        return self._shot(images, severities, rng)

    def _shot(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        photons = _SHOT[self.table(*images.shape[-2:])]
        levels = (images * 255).round_().to(torch.int64)
        counts = _poisson_by_level(levels, rng.bits(*images.shape[1:]), photons, severities)
        # a divisor tensor: CUDA would multiply by the reciprocal of a Python scalar
        return (counts.to(images.dtype) / self.per_sample(photons, severities, images)).clamp_(0.0, 1.0)

class ImpulseNoise(OneParameter):
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
        bits = rng.bits(*images.shape[1:])
        hit = (bits >> 8) & 0xFFFFFF < threshold
        salt = (bits & 1).to(images.dtype)  # the lowest bit: 0 or 1 with equal odds
        return torch.where(hit, salt, images)


class SpeckleNoise(OneParameter):
    """Multiplicative Gaussian noise x + x * N(0, c), clipped (the ImageNet-C validation noise)."""

    name = "speckle_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def parameters(self, height: int, width: int) -> tuple[float, ...]:
        return _SPECKLE[self.table(height, width)]

    def distort(self, images: torch.Tensor, sigma: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        return (images * (1 + sigma * rng.normal(*images.shape[1:]))).clamp_(0.0, 1.0)


_POISSON_TABLES: dict[tuple[tuple[int, ...], torch.device], tuple[torch.Tensor, list[int]]] = {}
_SLOT = 1 << 25  # one row of thresholds per (severity, level); thresholds are at most 2^24


def _poisson_by_level(levels: torch.Tensor, bits: torch.Tensor, photons: tuple[int, ...],
                      severities: torch.Tensor) -> torch.Tensor:
    """Poisson(level / 255 * photons[severity - 1]) samples by inverse CDF, for a severity per
    sample, with one search: the uniform is the top 24 bits of ``bits`` (k / 2^24), and the count
    is the number of CDF values at most the uniform, all in exact integer arithmetic."""
    key = (photons, levels.device)
    if key not in _POISSON_TABLES:
        table, blocks = _poisson_search_table(photons)
        _POISSON_TABLES[key] = (table.to(levels.device), blocks)
    table, blocks = _POISSON_TABLES[key]
    widths = [(stop - start) // 256 for start, stop in zip(blocks[:-1], blocks[1:])]
    present = torch.unique(severities).tolist()
    if len(present) == 1:  # search the severity's own rows only: a smaller table, same answer
        lo = blocks[present[0] - 1]
        table, blocks = table[lo : blocks[present[0]]], [b - lo for b in blocks]

    def per_sample(values: list[int]) -> torch.Tensor:
        return Distortion.per_sample(values, severities, levels)

    query = (per_sample([256 * i for i in range(len(photons))]) + levels) * _SLOT + ((bits >> 8) & 0xFFFFFF)
    position = torch.searchsorted(table, query.contiguous(), right=True)
    width = per_sample(widths)
    return torch.minimum(position - per_sample(blocks[:-1]) - levels * width, width - 1)


def _poisson_search_table(photons: tuple[int, ...]) -> tuple[torch.Tensor, list[int]]:
    """For each severity's photon count and each level l: the CDF of Poisson(l / 255 * photons)
    as integer thresholds ``ceil(cdf * 2^24)`` (a uniform k / 2^24 is at least a CDF value exactly
    when k is at least its threshold), stored at ``row * 2^25 + threshold`` with row = severity
    index * 256 + l, so one sorted int64 table holds every row (each severity's rows of one width).
    Returns the table and where each severity's rows start (and the end).

    The thresholds are taken from the float64 values ``l + cdf`` (``(l + cdf) - l`` is exact), so
    the test ``k >= threshold`` is exactly the float64 test ``l + u >= l + cdf``."""
    parts, blocks = [], [0]
    for index, count in enumerate(photons):
        rates = torch.arange(256, dtype=torch.float64) / 255 * count
        width = int(count + 12 * math.sqrt(count) + 16)  # the largest rate's tail is negligible
        k = torch.arange(width, dtype=torch.float64)
        log_pmf = k * torch.log(rates[:, None].clamp_min(1e-300)) - rates[:, None] - torch.lgamma(k + 1)
        cdf = torch.exp(log_pmf).cumsum(1).clamp_(max=1.0)
        level = torch.arange(256, dtype=torch.float64)[:, None]
        threshold = torch.ceil(((cdf + level) - level) * (1 << 24)).to(torch.int64)
        row = index * 256 + torch.arange(256, dtype=torch.int64)[:, None]
        parts.append((row * _SLOT + threshold).flatten())
        blocks.append(blocks[-1] + 256 * width)
    return torch.cat(parts), blocks


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [GaussianNoise, ShotNoise, ImpulseNoise, SpeckleNoise]
