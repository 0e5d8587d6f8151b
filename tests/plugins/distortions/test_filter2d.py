"""filter2d against cv2.filter2D (reflect-101 borders), through both of its paths."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robench_plugins.distortions._filters import correlate, filter2d


@pytest.mark.parametrize("size", [3, 7, 15, 23])  # direct up to 15 on the CPU, an FFT beyond
def test_filter2d_matches_opencv(size: int) -> None:
    generator = torch.Generator().manual_seed(size)
    images = torch.rand(2, 3, 40, 36, generator=generator, dtype=torch.float64)
    kernel = torch.rand(size, size, generator=generator, dtype=torch.float64)
    out = filter2d(images, kernel)
    for b in range(2):
        for c in range(3):
            expected = cv2.filter2D(images[b, c].numpy(), -1, kernel.numpy(), borderType=cv2.BORDER_REFLECT_101)
            np.testing.assert_allclose(out[b, c].numpy(), expected, atol=1e-9)


def test_correlate_is_the_single_channel_convolution() -> None:
    planes = torch.rand(5, 3, 20, 22, generator=torch.Generator().manual_seed(0))
    kernel = torch.rand(3, 5, generator=torch.Generator().manual_seed(1))
    expected = F.conv2d(planes.reshape(15, 1, 20, 22), kernel.view(1, 1, 3, 5)).reshape(5, 3, 18, 18)
    torch.testing.assert_close(correlate(planes, kernel), expected, rtol=0, atol=1e-6)
