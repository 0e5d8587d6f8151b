"""Procedural textures for the weather corruptions, batched with per-sample random streams."""

from __future__ import annotations

import torch

from robench.api import BatchRNG


def plasma_fractal(rng: BatchRNG, mapsize: int, wibble_decay: float) -> torch.Tensor:
    """ImageNet-C's plasma fractal (diamond-square), one ``(mapsize, mapsize)`` map per sample,
    normalised to [0, 1]; ``mapsize`` is a power of two.

    Follows the reference's ``plasma_fractal`` step by step, including its perturbation
    ``wibble * U(-wibble, wibble)`` (wibble starts at 100 and is divided by ``wibble_decay`` at
    every scale); every scale is one batched update.
    """
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize {mapsize} is not a power of two")
    b = rng.batch_size
    grid = torch.zeros(b, mapsize, mapsize, dtype=torch.float64, device=rng.device)
    step, wibble = mapsize, 100.0

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        noise = rng.uniform(*total.shape[1:]).to(torch.float64) * (2 * wibble) - wibble
        return total / 4 + wibble * noise

    while step >= 2:
        half = step // 2
        corners = grid[:, ::step, ::step]
        squares = corners + corners.roll(-1, 1)
        squares = squares + squares.roll(-1, 2)
        grid[:, half::step, half::step] = wibbled_mean(squares)
        centres = grid[:, half::step, half::step]
        corners = grid[:, ::step, ::step]
        grid[:, ::step, half::step] = wibbled_mean(centres + centres.roll(1, 1) + corners + corners.roll(-1, 2))
        grid[:, half::step, ::step] = wibbled_mean(centres + centres.roll(1, 2) + corners + corners.roll(-1, 1))
        step //= 2
        wibble /= wibble_decay
    grid = grid - grid.amin((1, 2), keepdim=True)
    return (grid / grid.amax((1, 2), keepdim=True)).to(torch.float32)


def next_power_of_two(value: int) -> int:
    """The smallest power of two >= ``value`` (1 for 0)."""
    return 1 if value <= 1 else 1 << (value - 1).bit_length()
