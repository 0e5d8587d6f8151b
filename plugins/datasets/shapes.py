"""Shapes: a procedural, seeded 10-class image dataset of any size.

Each image shows one filled shape (circle, ring, triangle, square, pentagon, star, cross,
crescent, semicircle, L) of random colour, scale, position and rotation on a textured background
(a smooth colour field plus a random stripe pattern). The class is the shape; colour, pose and
background are nuisances, so a classifier must learn shape. Rendering is batched torch with 2x
supersampling for anti-aliased edges; the same options always give the same pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from robench.api import ConfigError, Dataset, hookimpl

CLASSES = (
    "circle", "ring", "triangle", "square", "pentagon",
    "star", "cross", "crescent", "semicircle", "l_shape",
)
_SUPERSAMPLE = 2
_CHUNK = 1024


@dataclass(frozen=True)
class ShapesOptions:
    """Size and seed of the generated dataset."""

    train_size: int = 5000
    test_size: int = 1000
    image_size: int = 32
    seed: int = 0


class Shapes(Dataset):
    """Procedural shapes (10 classes) on textured backgrounds, 32x32 RGB, seeded, any size."""

    name = "shapes"
    num_classes = len(CLASSES)
    hflip = True

    def __init__(self, options: ShapesOptions = ShapesOptions()) -> None:
        self.options = options

    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        sizes = {"train": self.options.train_size, "test": self.options.test_size}
        if split not in sizes:
            raise ConfigError(f"unknown split {split!r} of dataset 'shapes'; valid: train, test")
        # train and test come from different streams, so no image is in both
        gen = torch.Generator().manual_seed(self.options.seed * 2 + (split == "test"))
        return render_shapes(sizes[split], self.options.image_size, gen)


def render_shapes(count: int, size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` class-balanced images (uint8 ``(N, 3, size, size)``) and labels, in chunks."""
    labels = torch.arange(count) % len(CLASSES)
    labels = labels[torch.randperm(count, generator=gen)]
    images = [_render_chunk(labels[i : i + _CHUNK], size, gen) for i in range(0, count, _CHUNK)]
    return torch.cat(images) if images else torch.empty(0, 3, size, size, dtype=torch.uint8), labels


def _render_chunk(labels: torch.Tensor, size: int, gen: torch.Generator) -> torch.Tensor:
    n = labels.numel()
    background = _background(n, size, gen)
    fg_colour = _contrasting_colour(background.mean(dim=(2, 3)), gen)
    # the shape's coverage of each pixel, from a supersampled mask: anti-aliased edges
    coverage = F.avg_pool2d(_shape_masks(labels, size * _SUPERSAMPLE, gen)[:, None], _SUPERSAMPLE)
    image = background * (1 - coverage) + fg_colour[:, :, None, None] * coverage
    return (image.clamp(0, 1) * 255).round().to(torch.uint8)


def _background(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    base = torch.rand(n, 3, 1, 1, generator=gen)
    smooth = F.interpolate(torch.rand(n, 3, 4, 4, generator=gen) - 0.5, size=(size, size),
                           mode="bicubic", align_corners=False)
    y, x = _grid(size)
    angle = torch.rand(n, 1, 1, generator=gen) * math.pi
    freq = 2 + 4 * torch.rand(n, 1, 1, generator=gen)  # stripes per image width
    phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    stripes = torch.sin(math.pi * freq * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
    amplitude = 0.12 * torch.rand(n, 1, 1, 1, generator=gen)
    return (base + 0.3 * smooth + amplitude * stripes[:, None]).clamp(0, 1)


def _contrasting_colour(bg: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """A random colour whose luminance differs from the background's by at least 0.25."""
    weights = torch.tensor([0.299, 0.587, 0.114])
    colour = torch.rand(bg.shape[0], 3, generator=gen)
    too_close = ((colour - bg) @ weights).abs() < 0.25
    # replace by a light tint on a dark background, a dark one on a light background
    dark_bg = (bg @ weights < 0.5)[:, None]
    fallback = torch.where(dark_bg, 0.75 + 0.25 * colour, 0.25 * colour)
    return torch.where(too_close[:, None], fallback, colour)


def _grid(fine: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel-centre coordinates in [-1, 1], shape ``(1, fine, fine)`` each."""
    axis = (torch.arange(fine, dtype=torch.float32) + 0.5) / fine * 2 - 1
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return y[None], x[None]


def _shape_masks(labels: torch.Tensor, fine: int, gen: torch.Generator) -> torch.Tensor:
    """Float masks ``(N, fine, fine)`` of each label's shape, posed at random."""
    n = labels.numel()
    radius = 0.45 + 0.3 * torch.rand(n, 1, 1, generator=gen)  # of the half-width
    centre = (torch.rand(n, 2, 1, 1, generator=gen) - 0.5) * 2 * (0.95 - radius[:, None])
    theta = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
    y, x = _grid(fine)
    dx, dy = x - centre[:, 0], y - centre[:, 1]
    # local coordinates, rotated by -theta and scaled so the shape has radius 1
    u = (dx * torch.cos(theta) + dy * torch.sin(theta)) / radius
    v = (-dx * torch.sin(theta) + dy * torch.cos(theta)) / radius
    masks = torch.zeros(n, fine, fine)
    for cls, test in enumerate(_INSIDE):
        members = labels == cls
        if members.any():
            masks[members] = test(u[members], v[members]).float()
    return masks


def _polygon(u: torch.Tensor, v: torch.Tensor, sides: int) -> torch.Tensor:
    rho, phi = torch.hypot(u, v), torch.atan2(v, u)
    sector = 2 * math.pi / sides
    local = torch.remainder(phi, sector) - sector / 2
    return rho * torch.cos(local) <= math.cos(math.pi / sides)


def _star(u: torch.Tensor, v: torch.Tensor, points: int = 5, inner: float = 0.45) -> torch.Tensor:
    rho, phi = torch.hypot(u, v), torch.atan2(v, u)
    half = math.pi / points
    local = torch.remainder(phi, 2 * half)
    local = torch.where(local > half, 2 * half - local, local)  # fold onto one edge
    # radius of the edge from the tip (angle 0, radius 1) to the notch (angle half, radius inner)
    edge = inner * math.sin(half) / (torch.sin(local) + inner * torch.sin(half - local))
    return rho <= edge


def _cross(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    arm = 0.35
    return ((u.abs() <= 1) & (v.abs() <= arm)) | ((v.abs() <= 1) & (u.abs() <= arm))


def _crescent(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return (torch.hypot(u, v) <= 1) & (torch.hypot(u - 0.5, v) > 0.8)


def _l_shape(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    upright = (u >= -0.8) & (u <= -0.2) & (v.abs() <= 1)
    foot = (u >= -0.8) & (u <= 0.8) & (v >= 0.4) & (v <= 1)
    return upright | foot


_INSIDE = (
    lambda u, v: torch.hypot(u, v) <= 1,
    lambda u, v: (torch.hypot(u, v) <= 1) & (torch.hypot(u, v) >= 0.55),
    lambda u, v: _polygon(u, v, 3),
    lambda u, v: (u.abs() <= 0.8) & (v.abs() <= 0.8),
    lambda u, v: _polygon(u, v, 5),
    _star,
    _cross,
    _crescent,
    lambda u, v: (torch.hypot(u, v + 0.4) <= 1) & (v + 0.4 >= 0),
    _l_shape,
)
assert len(_INSIDE) == len(CLASSES)


@hookimpl
def robench_datasets() -> list[type[Dataset]]:
    return [Shapes]
