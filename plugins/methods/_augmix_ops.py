"""AugMix's augmentation operations, batched: one call applies a per-image operation and level.

The operations and their level mappings follow the AugMix reference code (Hendrycks et al.,
2020, ``augmentations.py``): autocontrast, equalize, posterize, rotate, solarize, shear and
translate in x and y (the default set, which excludes the colour, contrast, brightness and
sharpness operations that overlap ImageNet-C's test corruptions), optionally those four too.
Images are float ``(B, 3, H, W)`` in [0, 1] on uint8 levels; geometric operations use bilinear
sampling with black fill, as Pillow's ``transform`` / ``rotate`` in the reference.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from robench.api import to_device
from robench_plugins.distortions._color import grayscale
from robench_plugins.distortions._filters import correlate

MAX_LEVEL = 10.0


def autocontrast(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Per-channel stretch of the darkest to the brightest value onto [0, 1] (ImageOps.autocontrast)."""
    low = x.amin((2, 3), keepdim=True)
    high = x.amax((2, 3), keepdim=True)
    span = high - low
    stretched = (x - low) / span.clamp_min(1e-6)
    return torch.where(span > 0, (stretched * 255).floor() / 255, x)


def equalize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Per-channel histogram equalisation with Pillow's ImageOps.equalize lookup table."""
    b, c, h, w = x.shape
    levels = (x * 255).round().long().flatten(2)  # (B, C, HW)
    hist = torch.zeros(b, c, 256, dtype=torch.long, device=x.device).scatter_add_(2, levels, torch.ones_like(levels))
    last = 255 - torch.argmax((hist.flip(2) > 0).long(), dim=2, keepdim=True)  # last non-empty bin
    step = (hist.sum(2, keepdim=True) - hist.gather(2, last)) // 255
    # lut[i] = (step // 2 + sum(hist[:i])) // step
    before = torch.cumsum(hist, 2) - hist
    lut = torch.div(step // 2 + before, step.clamp_min(1), rounding_mode="floor").clamp_(max=255)
    equalized = lut.gather(2, levels).float().view(b, c, h, w) / 255
    return torch.where(step.view(b, c, 1, 1) > 0, equalized, x)


def posterize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Keep the top ``4 - int(level * 4 / 10)`` bits of each value (ImageOps.posterize)."""
    bits = 4 - _int_parameter(level, 4)
    keep = (255 - (2 ** (8 - bits) - 1)).view(-1, 1, 1, 1)
    return ((x * 255).round().long() & keep).float() / 255


def solarize(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Invert values at or above ``256 - int(level * 256 / 10)`` (ImageOps.solarize)."""
    threshold = (256 - _int_parameter(level, 256)).view(-1, 1, 1, 1).float() / 255
    return torch.where(x >= threshold - 1e-6, 1 - x, x)


def rotate(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Rotate by ``int(level * 30 / 10)`` degrees, random direction, about the centre."""
    angle = torch.deg2rad(_int_parameter(level, 30).float() * sign)
    cos, sin = torch.cos(angle), torch.sin(angle)
    zero = torch.zeros_like(cos)
    return _affine(x, torch.stack([cos, -sin, zero, sin, cos, zero], 1), pixels=False)


def shear_x(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Shear along x by ``level * 0.3 / 10`` (Pillow AFFINE (1, s, 0, 0, 1, 0))."""
    s = _float_parameter(level, 0.3) * sign
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    return _affine(x, torch.stack([one, s, zero, zero, one, zero], 1), pixels=True)


def shear_y(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Shear along y by ``level * 0.3 / 10`` (Pillow AFFINE (1, 0, 0, s, 1, 0))."""
    s = _float_parameter(level, 0.3) * sign
    one, zero = torch.ones_like(s), torch.zeros_like(s)
    return _affine(x, torch.stack([one, zero, zero, s, one, zero], 1), pixels=True)


def translate_x(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Translate along x by ``int(level * size / 3 / 10)`` pixels."""
    t = _int_parameter(level, x.shape[-1] / 3).float() * sign
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    return _affine(x, torch.stack([one, zero, t, zero, one, zero], 1), pixels=True)


def translate_y(x: torch.Tensor, level: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Translate along y by ``int(level * size / 3 / 10)`` pixels."""
    t = _int_parameter(level, x.shape[-2] / 3).float() * sign
    one, zero = torch.ones_like(t), torch.zeros_like(t)
    return _affine(x, torch.stack([one, zero, zero, zero, one, t], 1), pixels=True)


def color(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Saturation enhance by ``0.1 + level * 1.8 / 10`` (ImageEnhance.Color)."""
    return _blend(grayscale(x).expand_as(x), x, _enhance_factor(level))


def contrast(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Contrast enhance around the mean grey (ImageEnhance.Contrast)."""
    mean = grayscale(x).mean((2, 3), keepdim=True).expand_as(x)
    return _blend(mean, x, _enhance_factor(level))


def brightness(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Brightness enhance towards black (ImageEnhance.Brightness)."""
    return _blend(torch.zeros_like(x), x, _enhance_factor(level))


def sharpness(x: torch.Tensor, level: torch.Tensor) -> torch.Tensor:
    """Sharpness enhance against Pillow's SMOOTH filter, borders kept (ImageEnhance.Sharpness)."""
    smooth = correlate(x, _smooth_kernel(x.device))
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return _blend(degenerate, x, _enhance_factor(level))


GEOMETRIC = {"rotate": rotate, "shear_x": shear_x, "shear_y": shear_y,
             "translate_x": translate_x, "translate_y": translate_y}
OPERATIONS = ("autocontrast", "equalize", "posterize", "rotate", "solarize",
              "shear_x", "shear_y", "translate_x", "translate_y")
OVERLAPPING = ("color", "contrast", "brightness", "sharpness")
_COLOUR = {"autocontrast": autocontrast, "equalize": equalize, "posterize": posterize,
           "solarize": solarize, "color": color, "contrast": contrast, "brightness": brightness,
           "sharpness": sharpness}


def apply_operations(x: torch.Tensor, ops: torch.Tensor, levels: torch.Tensor, signs: torch.Tensor,
                     names: tuple[str, ...], active: torch.Tensor) -> torch.Tensor:
    """Apply operation ``names[ops[i]]`` at ``levels[i]`` to image i where ``active[i]``;
    one batched call per operation present. The draws are best on the CPU (where AugMix makes
    them): the images of each operation are then found without reading from the device."""
    ops, active = ops.cpu(), active.cpu()
    levels, signs = to_device(levels, x.device), to_device(signs, x.device)
    out = x.clone()
    for index, name in enumerate(names):
        chosen = ((ops == index) & active).nonzero().flatten()
        if chosen.numel() == 0:
            continue
        rows = to_device(chosen, x.device)
        part, level = x.index_select(0, rows), levels.index_select(0, rows)
        if name in GEOMETRIC:
            out.index_copy_(0, rows, GEOMETRIC[name](part, level, signs.index_select(0, rows)))
        else:
            out.index_copy_(0, rows, _COLOUR[name](part, level))
    return out.clamp_(0.0, 1.0)


def _int_parameter(level: torch.Tensor, maxval: float) -> torch.Tensor:
    return (level * maxval / MAX_LEVEL).floor().long()


def _float_parameter(level: torch.Tensor, maxval: float) -> torch.Tensor:
    return level * maxval / MAX_LEVEL


def _enhance_factor(level: torch.Tensor) -> torch.Tensor:
    return (_float_parameter(level, 1.8) + 0.1).view(-1, 1, 1, 1)


# made once per device: a copy from pageable host memory per call would make the host wait for the
# device
@functools.lru_cache(maxsize=16)
def _smooth_kernel(device: torch.device) -> torch.Tensor:
    return (torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]]) / 13).to(device)


def _blend(degenerate: torch.Tensor, x: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    return (degenerate + factor * (x - degenerate)).clamp(0, 1)


def _affine(x: torch.Tensor, coeffs: torch.Tensor, pixels: bool) -> torch.Tensor:
    """Sample ``x`` at the points given by Pillow-style inverse affine coefficients
    (a, b, c, d, e, f): output (u, v) reads input (a*u + b*v + c, d*u + e*v + f); in pixel
    coordinates from the top-left (``pixels``) or about the centre (rotation)."""
    b, _, h, w = x.shape
    v, u = torch.meshgrid(torch.arange(h, device=x.device, dtype=x.dtype) + 0.5,
                          torch.arange(w, device=x.device, dtype=x.dtype) + 0.5, indexing="ij")
    if not pixels:
        u, v = u - w / 2, v - h / 2
    a, bb, c, d, e, f = (coeffs[:, i].to(x.dtype).view(b, 1, 1) for i in range(6))
    su, sv = a * u + bb * v + c, d * u + e * v + f
    if not pixels:
        su, sv = su + w / 2, sv + h / 2
    grid = torch.stack([2 * su / w - 1, 2 * sv / h - 1], -1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

