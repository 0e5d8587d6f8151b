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
    cumulative distribution is tabulated once per severity.
    """

    name = "shot_noise"
    group = "noise"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        photons = _SHOT[self.table(*images.shape[-2:])][severity - 1]
        levels = (images * 255).round_().to(torch.int64)
        counts = _poisson_by_level(levels, rng.uniform(*images.shape[1:]), photons)
        return (counts.to(images.dtype) / photons).clamp_(0.0, 1.0)


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


_POISSON_TABLES: dict[tuple[int, torch.device], torch.Tensor] = {}


def _poisson_by_level(levels: torch.Tensor, uniform: torch.Tensor, photons: int) -> torch.Tensor:
    """Poisson(level / 255 * photons) samples by inverse CDF, batched with one searchsorted."""
    key = (photons, uniform.device)
    if key not in _POISSON_TABLES:
        _POISSON_TABLES[key] = _poisson_search_table(photons).to(uniform.device)
    table = _POISSON_TABLES[key]
    width = table.numel() // 256
    query = (levels.to(table.dtype) + uniform.to(table.dtype)).contiguous()
    position = torch.searchsorted(table, query, right=True)
    return (position - levels * width).clamp_(max=width - 1)


def _poisson_search_table(photons: int) -> torch.Tensor:
    """The CDFs of Poisson(l / 255 * photons) for l = 0..255, each shifted up by l and
    concatenated: a sorted float64 table in which ``l + u`` falls in row l at the inverse CDF."""
    rates = torch.arange(256, dtype=torch.float64) / 255 * photons
    width = int(photons + 12 * math.sqrt(photons) + 16)  # the largest rate's tail is negligible
    k = torch.arange(width, dtype=torch.float64)
    log_pmf = k * torch.log(rates[:, None].clamp_min(1e-300)) - rates[:, None] - torch.lgamma(k + 1)
    cdf = torch.exp(log_pmf).cumsum(1).clamp_(max=1.0)
    return (cdf + torch.arange(256, dtype=torch.float64)[:, None]).flatten()


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [GaussianNoise, ShotNoise, ImpulseNoise, SpeckleNoise]
