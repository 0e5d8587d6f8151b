"""gaussian_noise: the sigmas of the reference tables, clipping, table choice by image size."""

from __future__ import annotations

import pytest
import torch

from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions.noise import GaussianNoise

CIFAR_SIGMAS = (0.04, 0.06, 0.08, 0.09, 0.10)
IMAGENET_SIGMAS = (0.08, 0.12, 0.18, 0.26, 0.38)


@pytest.mark.parametrize(("size", "sigmas"), [(32, CIFAR_SIGMAS), (96, IMAGENET_SIGMAS)])
def test_noise_has_the_table_sigma(size: int, sigmas: tuple[float, ...]) -> None:
    grey = torch.full((8, 3, size, size), 0.5)
    for severity, sigma in enumerate(sigmas, start=1):
        out = GaussianNoise()(grey, severity, BatchRNG(sample_seeds(0, torch.arange(8))))
        residual = out - grey
        if sigma * 5 < 0.5:  # clipping is negligible: the noise is the reference N(0, sigma)
            assert abs(float(residual.std()) - sigma) < 0.02 * sigma
            assert abs(float(residual.mean())) < 0.02 * sigma


def test_table_switches_at_96_pixels() -> None:
    assert GaussianNoise().table(95, 200) == "cifar-10-c"
    assert GaussianNoise().table(96, 96) == "imagenet-c"


def test_output_is_clipped() -> None:
    white = torch.ones(2, 3, 8, 8)
    out = GaussianNoise()(white, 5, BatchRNG(sample_seeds(0, torch.arange(2))))
    assert out.max() == 1.0 and out.min() < 1.0
