"""Colour-space conversions with scikit-image's exact formulas, batched over ``(B, 3, H, W)``."""

from __future__ import annotations

import torch

from robench_plugins.distortions._device import constant


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    """``skimage.color.rgb2hsv``: hue, saturation, value in [0, 1], channel axis 1.

    Ties for the maximum channel resolve as in scikit-image (blue over green over red).
    """
    r, g, b = rgb.unbind(1)
    value = rgb.amax(1)
    delta = value - rgb.amin(1)
    safe_delta = torch.where(delta == 0, torch.ones_like(delta), delta)
    saturation = torch.where(delta == 0, torch.zeros_like(delta), delta / torch.where(value == 0, 1, value))
    hue = torch.where(r == value, (g - b) / safe_delta, torch.zeros_like(delta))
    hue = torch.where(g == value, 2.0 + (b - r) / safe_delta, hue)
    hue = torch.where(b == value, 4.0 + (r - g) / safe_delta, hue)
    hue = torch.where(delta == 0, torch.zeros_like(hue), torch.remainder(hue / 6.0, 1.0))
    return torch.stack([hue, saturation, value], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """``skimage.color.hsv2rgb``."""
    h, s, v = hsv.unbind(1)
    sector = torch.floor(h * 6)
    f = h * 6 - sector
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    sector = torch.remainder(sector, 6).to(torch.int64)
    choices = torch.stack([
        torch.stack([v, t, p], 1), torch.stack([q, v, p], 1), torch.stack([p, v, t], 1),
        torch.stack([p, q, v], 1), torch.stack([t, p, v], 1), torch.stack([v, p, q], 1),
    ])  # (6, B, 3, H, W)
    index = sector[None, :, None].expand(1, -1, 3, -1, -1)
    return choices.gather(0, index)[0]


def grayscale(rgb: torch.Tensor) -> torch.Tensor:
    """Luma as ``cv2.cvtColor(..., COLOR_RGB2GRAY)`` on float images: 0.299 R + 0.587 G + 0.114 B,
    shape ``(B, 1, H, W)``."""
    weights = constant((0.299, 0.587, 0.114), rgb.device, rgb.dtype)
    return (rgb * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
