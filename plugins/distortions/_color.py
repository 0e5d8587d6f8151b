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
    grey = delta == 0
    safe_delta = torch.where(grey, 1.0, delta)
    saturation = torch.where(grey, 0.0, delta / torch.where(value == 0, 1.0, value))
    blue, green = b == value, g == value
    # skimage: (g - b) / delta where red is the maximum, 2 + (b - r) / delta for green, 4 + (r - g) / delta for blue
    numerator = torch.where(blue, r - g, torch.where(green, b - r, g - b))
    offset = torch.where(blue, 4.0, torch.where(green, 2.0, 0.0))
    hue = torch.where(grey, 0.0, torch.remainder((offset + numerator / safe_delta) / 6.0, 1.0))
    return torch.stack([hue, saturation, value], 1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    """``skimage.color.hsv2rgb``."""
    h, s, v = hsv.unbind(1)
    sector = torch.floor(h * 6)
    f = h * 6 - sector
    p = v * (1 - s)
    q = v * (1 - f * s)
    t = v * (1 - (1 - f) * s)
    planes = torch.stack([v, p, q, t], 1)  # (B, 4, H, W)
    # Per sector 0..5 the planes of (R, G, B) are (v,t,p) (q,v,p) (p,v,t) (p,q,v) (t,p,v) (v,p,q),
    # packed two bits per sector into one integer per channel.
    codes = constant(_HSV_PLANES, hsv.device, torch.int32).view(1, 3, 1, 1)
    sector = torch.remainder(sector, 6).to(torch.int32).mul_(2)
    return planes.gather(1, ((codes >> sector[:, None]) & 3).long())


_HSV_PLANES = tuple(
    sum(plane << (2 * sector) for sector, plane in enumerate(planes))
    for planes in ((0, 2, 1, 1, 3, 0), (3, 0, 0, 2, 1, 1), (1, 1, 3, 0, 0, 2))
)


def grayscale(rgb: torch.Tensor) -> torch.Tensor:
    """Luma as ``cv2.cvtColor(..., COLOR_RGB2GRAY)`` on float images: 0.299 R + 0.587 G + 0.114 B,
    shape ``(B, 1, H, W)``."""
    weights = constant((0.299, 0.587, 0.114), rgb.device, rgb.dtype)
    return (rgb * weights.view(1, 3, 1, 1)).sum(1, keepdim=True)
