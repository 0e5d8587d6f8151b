"""HSV conversions against scikit-image (the reference's brightness and saturate use them)."""

from __future__ import annotations

import pytest
import torch
from skimage.color import hsv2rgb, rgb2hsv

from robench_plugins.distortions._color import hsv_to_rgb, rgb_to_hsv


def _channels_last(x: torch.Tensor):
    return x.permute(0, 2, 3, 1).numpy()


def _channels_first(x) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2)


@pytest.mark.parametrize("levels", [4, 256])  # 4 levels: many ties for the maximum, and greys
def test_hsv_round_trip_matches_skimage_exactly(levels: int) -> None:
    generator = torch.Generator().manual_seed(levels)
    rgb = torch.randint(0, levels, (32, 3, 16, 16), generator=generator).float() / (levels - 1)
    hsv = rgb_to_hsv(rgb)
    assert torch.equal(hsv, _channels_first(rgb2hsv(_channels_last(rgb))))
    assert torch.equal(hsv_to_rgb(hsv), _channels_first(hsv2rgb(_channels_last(hsv))))
