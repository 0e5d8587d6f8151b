"""Procedural textures for the weather corruptions, batched with per-sample random streams."""

from __future__ import annotations

import torch

from robench import cpu_kernels, native
from robench.api import BatchRNG, to_device
from robench.fused import FusedKernel, tl, triton

_KERNEL = FusedKernel("plasma fractal")


def plasma_fractal(rng: BatchRNG, mapsize: int, wibble_decay: float) -> torch.Tensor:
    """ImageNet-C's plasma fractal (diamond-square), one ``(mapsize, mapsize)`` map per sample,
    normalised to [0, 1]; ``mapsize`` is a power of two.

    Follows the reference's ``plasma_fractal`` step by step, including its perturbation
    ``wibble * U(-wibble, wibble)`` (wibble starts at 100 and is divided by ``wibble_decay`` at
    every scale); every scale is one batched update.
    """
    return plasma_fractals(rng, mapsize, wibble_decay)[:, 0]


def plasma_fractals(rng: BatchRNG, mapsize: int, *wibble_decays: float | torch.Tensor,
                    corner: tuple[int, int] | None = None) -> torch.Tensor:
    """Several plasma fractals per sample, ``(B, len(wibble_decays), mapsize, mapsize)``, computed
    together: the same maps as successive :func:`plasma_fractal` calls, one per decay. A decay is
    a number, or a CPU tensor of one decay per sample. ``corner`` (height, width): only the maps'
    top-left corner of that size (what the image-sized callers keep)."""
    if mapsize & (mapsize - 1):
        raise ValueError(f"mapsize {mapsize} is not a power of two")
    b, maps = rng.batch_size, len(wibble_decays)
    height, width = corner or (mapsize, mapsize)
    # All the reference's perturbations, wibble * U(-wibble, wibble), in one pass: per map, scale
    # by scale (squares, then the two edge sets), n x n values each for n = 1, 2, 4, ... corners.
    sizes = _draw_sizes(mapsize)
    if not _KERNEL.available(rng.device) and native.available(rng.device):  # a map at a time in C
        decays = torch.stack(torch.broadcast_tensors(*[torch.as_tensor(d, dtype=torch.float64).reshape(-1)
                                                       for d in wibble_decays]), dim=1).expand(b, maps)
        return cpu_kernels.plasma_maps(rng.seeds, rng.open_streams(len(sizes) * maps), decays, mapsize, height, width)
    wibbles = torch.stack(torch.broadcast_tensors(*[_wibbles(mapsize, d, rng.device) for d in wibble_decays]), dim=1)
    uniform = rng.uniform_streams(*sizes * maps).view(b, maps, -1)
    noise = uniform.to(torch.float64).mul_(2 * wibbles).sub_(wibbles).mul_(wibbles).view(b * maps, -1)
    grid = torch.zeros(b * maps, mapsize, mapsize, dtype=torch.float64, device=rng.device)
    if not (_KERNEL.available(grid.device) and _fused_scales(grid, noise)):
        _scales(grid, noise, sizes)
    grid = grid - grid.amin((1, 2), keepdim=True)
    grid = (grid / grid.amax((1, 2), keepdim=True)).to(torch.float32).view(b, maps, mapsize, mapsize)
    return grid[..., :height, :width].contiguous()  # as the C path's: reductions over it sum alike


def _scales(grid: torch.Tensor, noise: torch.Tensor, sizes: tuple[int, ...]) -> None:
    """The diamond-square updates of every scale, coarse to fine, in place on ``grid``
    ``(N, M, M)`` with the draws ``noise`` ``(N, sum(sizes))``."""
    draws = iter(noise.split(sizes, dim=1))
    step = grid.shape[-1]

    def wibbled_mean(total: torch.Tensor) -> torch.Tensor:
        return total / 4 + next(draws).view(total.shape)

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


def _fused_scales(grid: torch.Tensor, noise: torch.Tensor) -> bool:
    """:func:`_scales` as one kernel per scale (the three updates of a scale together); False,
    with ``grid`` as it was, if the kernel is unavailable."""
    maps, mapsize = grid.shape[0], grid.shape[-1]
    step, offset = mapsize, 0
    while step >= 2:
        n = mapsize // step
        if not _KERNEL.launch(_scale_kernel, maps * n * n, 256, grid, noise, maps * n * n, n, step,
                              mapsize, noise.shape[1], offset):
            grid.zero_()
            return False
        offset += 3 * n * n
        step //= 2
    return True


if triton is not None:

    @triton.jit(do_not_specialize=["cells", "n", "step", "mapsize", "row", "offset"])
    def _scale_kernel(grid_ptr, noise_ptr, cells, n, step, mapsize, row, offset, BLOCK: tl.constexpr):
        """One scale of :func:`_scales` for ``cells`` = maps x n x n corner cells: a cell's
        square centre and its two edge points, each sum added in the torch code's order (so the
        same float64 values); the neighbouring centres an edge reads are recomputed here."""
        index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = index < cells
        cell = index % (n * n)
        i, j = cell // n, cell % n
        up, down, left, right = (i + n - 1) % n, (i + 1) % n, (j + n - 1) % n, (j + 1) % n
        corners = grid_ptr + (index // (n * n)) * mapsize * mapsize  # corner (a, b) at (a * step, b * step)
        draws = noise_ptr + (index // (n * n)) * row + offset  # this scale's squares, then both edge sets
        here = tl.load(corners + (i * step) * mapsize + j * step, mask=mask, other=0.0)
        below = tl.load(corners + (down * step) * mapsize + j * step, mask=mask, other=0.0)
        after = tl.load(corners + (i * step) * mapsize + right * step, mask=mask, other=0.0)
        below_after = tl.load(corners + (down * step) * mapsize + right * step, mask=mask, other=0.0)
        above = tl.load(corners + (up * step) * mapsize + j * step, mask=mask, other=0.0)
        above_after = tl.load(corners + (up * step) * mapsize + right * step, mask=mask, other=0.0)
        before = tl.load(corners + (i * step) * mapsize + left * step, mask=mask, other=0.0)
        below_before = tl.load(corners + (down * step) * mapsize + left * step, mask=mask, other=0.0)
        square = tl.load(draws + cell, mask=mask, other=0.0)
        square_above = tl.load(draws + up * n + j, mask=mask, other=0.0)
        square_before = tl.load(draws + i * n + left, mask=mask, other=0.0)
        edge_a_draw = tl.load(draws + n * n + cell, mask=mask, other=0.0)
        edge_b_draw = tl.load(draws + 2 * n * n + cell, mask=mask, other=0.0)
        # centre (i, j) = ((C[i,j] + C[i+1,j]) + (C[i,j+1] + C[i+1,j+1])) / 4 + draw
        centre = ((here + below) + (after + below_after)) / 4.0 + square
        centre_above = ((above + here) + (above_after + after)) / 4.0 + square_above
        centre_before = ((before + below_before) + (here + below)) / 4.0 + square_before
        edge_a = (((centre + centre_above) + here) + after) / 4.0 + edge_a_draw
        edge_b = (((centre + centre_before) + here) + below) / 4.0 + edge_b_draw
        half = step // 2
        tl.store(corners + (i * step + half) * mapsize + j * step + half, centre, mask=mask)
        tl.store(corners + (i * step) * mapsize + j * step + half, edge_a, mask=mask)
        tl.store(corners + (i * step + half) * mapsize + j * step, edge_b, mask=mask)


def _draw_sizes(mapsize: int) -> tuple[int, ...]:
    """The sizes of the fractal's draws: 3 per scale (squares, two edge sets) of n x n values for
    n = 1, 2, 4, ... corners per side."""
    return tuple(4**k for k in range(mapsize.bit_length() - 1) for _ in range(3))


_WIBBLES: dict[tuple[int, float, torch.device], torch.Tensor] = {}


def _draw_wibbles(mapsize: int, wibble_decay: float, device: torch.device) -> torch.Tensor:
    """Each drawn value's wibble, float64 ``(total,)``: 100 at the coarsest scale, divided by
    ``wibble_decay`` per scale (cached per device)."""
    key = (mapsize, wibble_decay, device)
    if key not in _WIBBLES:
        wibbles, wibble = [], 100.0
        for k in range(mapsize.bit_length() - 1):
            wibbles += [wibble] * (3 * 4**k)
            wibble /= wibble_decay
        _WIBBLES[key] = torch.tensor(wibbles, dtype=torch.float64).to(device)
    return _WIBBLES[key]


def _wibbles(mapsize: int, decay: float | torch.Tensor, device: torch.device) -> torch.Tensor:
    """Each drawn value's wibble, ``(1, total)`` for one decay or ``(B, total)`` for a CPU tensor of
    per-sample decays (gathered on the device from the few distinct layouts: no synchronisation)."""
    if not isinstance(decay, torch.Tensor):
        return _draw_wibbles(mapsize, decay, device)[None]
    distinct, which = torch.unique(decay, return_inverse=True)
    layouts = torch.stack([_draw_wibbles(mapsize, float(d), device) for d in distinct.tolist()])
    return layouts.index_select(0, to_device(which, device))


def next_power_of_two(value: int) -> int:
    """The smallest power of two >= ``value`` (1 for 0)."""
    return 1 if value <= 1 else 1 << (value - 1).bit_length()
