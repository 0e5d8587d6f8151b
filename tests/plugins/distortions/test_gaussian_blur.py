"""gaussian_blur against scipy.ndimage.gaussian_filter, the filter behind the reference's
skimage.filters.gaussian (mode 'nearest', truncate 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions.blur import GaussianBlur


@pytest.mark.parametrize("size", [32, 128])
def test_blur_matches_scipy_at_every_severity(size: int) -> None:
    images = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    blur = GaussianBlur()
    table = {32: (0.4, 0.6, 0.7, 0.8, 1.0), 128: (1.0, 2.0, 3.0, 4.0, 6.0)}[size]
    for severity, sigma in enumerate(table, start=1):
        out = blur(images, severity, BatchRNG(sample_seeds(0, torch.arange(2)))).numpy()
        expected = ndimage.gaussian_filter(
            images.numpy().astype(np.float64), sigma=(0, 0, sigma, sigma), mode="nearest", truncate=4.0
        )
        assert np.abs(out - expected).max() < 1e-5


def test_blur_ignores_randomness() -> None:
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    a = GaussianBlur()(images, 3, BatchRNG(sample_seeds(0, torch.arange(3))))
    b = GaussianBlur()(images, 3, BatchRNG(sample_seeds(99, torch.arange(3))))
    assert torch.equal(a, b)
