"""The distortions the seed paper ("Distilling Vision Transformers for Distortion-Robust
Representation Learning", 2026) adds beyond ImageNet-C: occlusion by blanked patches, low
resolution, and salt-and-pepper pixels. They have no canonical tables; the five severities
below are monotone in damage and the same at every image size (they are relative to it).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.api import BatchRNG, Distortion, hookimpl
from robench_plugins.distortions._parametric import OneParameter

# fraction of the patch grid blanked
_OCCLUSION = (0.1, 0.2, 0.35, 0.5, 0.65)
_GRID = 8  # patches per side: 4-px patches at 32 px (one ViT patch), 28-px at 224 px
# side of the low-resolution image, as a fraction of the original side
_LOW_RESOLUTION = (1 / 1.5, 1 / 2, 1 / 3, 1 / 4, 1 / 6)
# fraction of pixels set to black or white
_SALT_AND_PEPPER = (0.02, 0.05, 0.1, 0.2, 0.3)


class Occlusion(OneParameter):
    """Patch masking: a random 10-65% of an 8x8 grid of patches blanked to black.

    Exactly round(fraction * 64) cells per image.

    The grid matches the tokens of a patch-4 ViT at 32 px, so severity is the share of tokens
    that see nothing.
    """

    name = "occlusion"
    group = "paper"

    def parameters(self, height: int, width: int) -> tuple[int, ...]:
        return tuple(round(fraction * _GRID * _GRID) for fraction in _OCCLUSION)

    def distort(self, images: torch.Tensor, count: int | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        b, _, h, w = images.shape
        cells = _GRID * _GRID
        if isinstance(count, torch.Tensor):
            count = count.view(b, 1)
        rank = rng.uniform(cells).argsort(dim=1).argsort(dim=1)  # a random permutation per image
        hidden = (rank < count).view(b, 1, _GRID, _GRID).to(images.dtype)
        mask = F.interpolate(hidden, size=(h, w), mode="nearest")  # cells of floor(i * 8 / h)
        return images * (1 - mask)


class LowResolution(Distortion):
    """Low resolution: area downscale to 1/1.5-1/6 of the side, bilinear upscale back.

    Factors 1/1.5, 1/2, 1/3, 1/4, 1/6 (at least 2 px).
    """

    name = "low_resolution"
    group = "paper"

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        h, w = images.shape[-2:]
        factor = _LOW_RESOLUTION[severity - 1]
        small = (max(2, round(h * factor)), max(2, round(w * factor)))
        down = F.interpolate(images, size=small, mode="area")
        return F.interpolate(down, size=(h, w), mode="bilinear", align_corners=False).clamp_(0.0, 1.0)


class SaltAndPepper(OneParameter):
    """Salt-and-pepper pixels: 2-30% of whole pixels set to black or white.

    Black or white with equal odds; unlike ``impulse_noise``, whole pixels, not channel values.
    """

    name = "salt_and_pepper"
    group = "paper"

    def parameters(self, height: int, width: int) -> tuple[float, ...]:
        return _SALT_AND_PEPPER

    def distort(self, images: torch.Tensor, fraction: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        h, w = images.shape[-2:]
        hit = rng.uniform(1, h, w) < fraction
        salt = (rng.uniform(1, h, w) < 0.5).to(images.dtype)
        return torch.where(hit, salt, images)


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [Occlusion, LowResolution, SaltAndPepper]
