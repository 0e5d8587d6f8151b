"""glass_blur's pixel copies: the reference's sequential scan ``x[p] = x[p + d]``, batched.

The scan runs from the bottom-right, each scanned pixel copying a random neighbour within the
shift range (the reference's numpy tuple swap copies rather than swaps: see ``GlassBlur``). Each
copy may read an earlier one, so a pixel's final value is the original value at the end of a
chain of copies: :func:`local_copies` walks each pixel's chain in one fused kernel per iteration on
a GPU, runs the scan itself, a copy at a time, in C on the CPU (``cpu_kernels.glass_copies``), and
elsewhere finds every chain's end at once by pointer doubling (:func:`_chain_ends`).
"""

from __future__ import annotations

import functools
import math

import torch

from robench import cpu_kernels, native
from robench.api import BatchRNG
from robench.fused import FusedKernel, tl, triton


def local_copies(images: torch.Tensor, shift: int, iterations: int, rng: BatchRNG,
                  each: torch.Tensor | None = None) -> torch.Tensor:
    """The reference's scan ``x[p] = x[p + d]``, d uniform in [-shift, shift)^2, by pointer jumping,
    ``iterations`` times (image ``b`` only ``each[b]`` times, if given: it ignores the later draws).

    Scanning from the bottom-right, a pixel reads a source already overwritten (one later in
    raster order, inside the scanned region) or one still original. So its final value is the
    original value at the end of a chain: follow each copy's source while that source was itself
    overwritten earlier. The chains' ends come from pointer doubling, ``log2`` of the longest
    possible chain rounds of two gathers over the whole batch, and the result is one gather of
    the original pixels: the sequential scan's exact result, in a few dozen batched operations.
    On a GPU one fused kernel per iteration walks each pixel's chain instead (chains are short);
    on the CPU the C kernels run the scan itself, an image at a time (one pass a scan, where the
    pointer doubling makes two dozen gathers over the batch), with the same draws.
    """
    b, c, h, w = images.shape
    order, region = _scan_order(h, w, shift, images.device)
    if order.numel() == 0:
        return images
    if native.takes(images):  # the scan itself, image by image in C: its draws hashed there
        counts = each if each is not None else torch.full((b,), iterations)
        return cpu_kernels.glass_copies(images, _scan_index(h, w, shift, images.device), shift, counts.clamp(max=iterations),
                                        rng.seeds, rng.open_streams(iterations))
    x = images.reshape(b, c, h * w)
    for iteration in range(iterations):
        uniform = rng.uniform(order.numel(), 2)  # (B, P, (dx, dy)), in draw order
        if _COPIES_KERNEL.available(images.device):
            out = torch.empty_like(x)
            if _COPIES_KERNEL.launch(_copies_kernel, b * h * w, 256, x, uniform, _scan_index(h, w, shift, x.device),
                                     each if each is not None else x, out, b * h * w, h * w, w, order.numel(),
                                     shift, iteration, CHANNELS=c, EACH=each is not None):
                x = out
                continue
        # as rng.integers(-shift, shift, P, 2) would decode them
        offsets = (uniform * (2 * shift)).to(torch.int64).clamp_(max=2 * shift - 1) - shift
        source = order[None] + offsets[..., 1] * w + offsets[..., 0]
        if shift == 1:  # offsets in {-1, 0}^2 never point later in raster order: no chains
            ends = torch.arange(h * w, device=images.device).expand(b, -1).clone()
            ends[:, order] = source
        else:
            ends = _chain_ends(order, source, region, stop_early=images.device.type == "cpu")
        if each is not None:  # images past their own count stay as they are
            ends = torch.where((each > iteration)[:, None], ends, torch.arange(h * w, device=ends.device))
        x = x.gather(2, ends[:, None].expand(-1, c, -1))
    return x.reshape(b, c, h, w)


_COPIES_KERNEL = FusedKernel("glass copies")


@functools.lru_cache(maxsize=64)
def _scan_index(h: int, w: int, shift: int, device: torch.device) -> torch.Tensor:
    """Each pixel's position in :func:`_scan_order` (the row of its offset draw), -1 outside the
    scanned region: int32 ``(H * W,)``."""
    order, _ = _scan_order(h, w, shift, torch.device("cpu"))
    index = torch.full((h * w,), -1, dtype=torch.int32)
    index[order] = torch.arange(order.numel(), dtype=torch.int32)
    return index.to(device)


if triton is not None:

    @triton.jit(do_not_specialize=["total", "n", "w", "pixels", "shift", "iteration"])
    def _copies_kernel(x_ptr, uniform_ptr, scan_ptr, each_ptr, out_ptr, total, n, w, pixels, shift, iteration,
                       CHANNELS: tl.constexpr, EACH: tl.constexpr, BLOCK: tl.constexpr):
        """One iteration of the scan for ``total`` = B x H*W pixels: a scanned pixel takes its
        source's value, and that source's own source while the source was scanned earlier (in
        the region, later in raster order); every other pixel keeps its value."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        image, pixel = lane // n, lane % n
        step = tl.load(scan_ptr + pixel, mask=mask, other=-1)
        active = mask & (step >= 0)
        if EACH:  # images with fewer iterations than the batch's most keep their pixels
            active = active & (tl.load(each_ptr + image, mask=mask, other=0.0) > iteration)
        span = 2 * shift
        current, result = pixel, pixel
        pending = tl.max(active.to(tl.int32), axis=0)
        while pending > 0:
            draw = uniform_ptr + (image * pixels + step) * 2
            dx = tl.minimum((tl.load(draw, mask=active, other=0.0) * span).to(tl.int32), span - 1) - shift
            dy = tl.minimum((tl.load(draw + 1, mask=active, other=0.0) * span).to(tl.int32), span - 1) - shift
            source = current + dy * w + dx
            source_step = tl.load(scan_ptr + source, mask=active, other=-1)
            follow = active & (source_step >= 0) & (source > current)
            result = tl.where(active & ~follow, source, result)
            current = tl.where(follow, source, current)
            step = tl.where(follow, source_step, step)
            active = follow
            pending = tl.max(active.to(tl.int32), axis=0)
        for channel in tl.static_range(CHANNELS):
            row = (image * CHANNELS + channel) * n
            tl.store(out_ptr + row + pixel, tl.load(x_ptr + row + result, mask=mask, other=0.0), mask=mask)


def _chain_ends(order: torch.Tensor, source: torch.Tensor, region: torch.Tensor, stop_early: bool) -> torch.Tensor:
    """For every pixel (``(B, H * W)``), where its final value comes from after the scan in
    which pixel ``order[k]`` copies from ``source[:, k]``.

    A pixel outside the scanned region keeps its own value; a scanned pixel takes its source's
    final value if the source was scanned before it (inside the region and later in raster
    order, as the scan runs backwards), else the source's original value. ``stop_early`` checks
    after each round whether every chain has ended (free on the CPU; on a GPU the check would
    make the host wait, so every round runs, enough for the longest possible chain).
    """
    b, n = source.shape[0], region.numel()
    pixels = torch.arange(n, device=source.device)
    target = pixels.expand(b, n).clone()
    target[:, order] = source
    follow = torch.zeros(b, n, dtype=torch.bool, device=source.device)
    follow[:, order] = region[source] & (source > order)
    done = (~follow).view(-1)
    # Pointer doubling over the whole batch as one flat int32 array of positions (b * n + p):
    # after r rounds, each entry is 2^r copies along its chain, or the chain's end (done).
    first = (torch.arange(b, device=source.device) * n)[:, None]
    flat = (target + first).to(torch.int32).view(-1)
    for _ in range(max(1, math.ceil(math.log2(order.numel() + 1)))):
        if stop_early and bool(done.all()):
            break
        reached_done = done.index_select(0, flat)
        flat = torch.where(done, flat, flat.index_select(0, flat))
        done |= reached_done
    return flat.view(b, n) - first


@functools.lru_cache(maxsize=64)
def _scan_order(h: int, w: int, shift: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference scan's pixels, as flat positions in the order robench draws their offsets
    (by wavefront step ``(shift + 1) * i + j`` of scan index (i, j), rows and columns
    descending: the order of robench's earlier wavefront implementation, kept so that a seed
    gives the same image), and the scanned region as a flat ``(H * W,)`` mask."""
    rows = torch.tensor(range(h - shift, shift, -1), dtype=torch.int64)  # Python's range: empty where
    cols = torch.tensor(range(w - shift, shift, -1), dtype=torch.int64)  # the image is too small to scan
    region = torch.zeros(h * w, dtype=torch.bool)
    if rows.numel() == 0 or cols.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=device), region.to(device)
    i, j = torch.meshgrid(torch.arange(rows.numel()), torch.arange(cols.numel()), indexing="ij")
    step = ((shift + 1) * i + j).flatten()
    order = (rows[i] * w + cols[j]).flatten()[torch.argsort(step, stable=True)]
    region[order] = True
    return order.to(device), region.to(device)
