"""The ``spatter`` corruption of ImageNet-C / CIFAR-10-C (Hendrycks & Dietterich, 2019,
"Benchmarking Neural Network Robustness to Common Corruptions and Perturbations", ICLR), batched.

A faithful port of ``imagecorruptions`` 1.1.2's ``spatter``: a thresholded, blurred noise field
is either water (pale-turquoise embossed droplets, built from Canny edges and a distance
transform, as OpenCV computes them) or mud (opaque brown blobs). Everything runs on whole
batches on the images' device; the only Python loops are over stencil offsets and hysteresis
rounds, never over images. On the CPU the water steps run in C (``cpu_kernels.spatter_water``); on a
GPU, from Canny on, in the fused kernels of :mod:`._spatter_fused` (the torch path below stays
the reference and the fallback).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from robench import cpu_kernels, native
from robench.api import Distortion, to_device
from robench.rng import BatchRNG
from robench_plugins.distortions import _spatter_fused
from robench_plugins.distortions._device import constant
from robench_plugins.distortions._filters import correlate, gaussian_blur, gaussian_blur_each, pad

# (loc, scale, sigma, threshold, intensity, mud) per severity 1..5.
SPATTER_TABLES: dict[str, tuple[tuple[float, float, float, float, float, int], ...]] = {
    "imagenet-c": (
        (0.65, 0.3, 4, 0.69, 0.6, 0),
        (0.65, 0.3, 3, 0.68, 0.6, 0),
        (0.65, 0.3, 2, 0.68, 0.5, 0),
        (0.65, 0.3, 1, 0.65, 1.5, 1),
        (0.67, 0.4, 1, 0.65, 1.5, 1),
    ),
    "cifar-10-c": (
        (0.62, 0.1, 0.7, 0.7, 0.5, 0),
        (0.65, 0.1, 0.8, 0.7, 0.5, 0),
        (0.65, 0.3, 1, 0.69, 0.5, 0),
        (0.65, 0.1, 0.7, 0.69, 0.6, 1),
        (0.65, 0.1, 0.5, 0.68, 0.6, 1),
    ),
}

# The reference builds the colour as channels (175, 238, 238) and adds it to its RGB image after
# cv2.cvtColor(BGR2BGRA), which only appends alpha: the values land on R, G, B in that order.
_WATER = (175 / 255, 238 / 255, 238 / 255)
_MUD = (63 / 255, 42 / 255, 20 / 255)
_EMBOSS = ((-2.0, -1.0, 0.0), (-1.0, 1.0, 1.0), (0.0, 1.0, 2.0))
_TG22 = 13573  # OpenCV Canny: round(tan(22.5 deg) * 2^15)
_MAX_DIST = 20  # cv2.threshold(dist, 20, 20, THRESH_TRUNC)
_REACH = _MAX_DIST + 1  # row gaps are capped here: any edge farther is beyond the truncation


def spatter(
    images: torch.Tensor, params: tuple[float, float, float, float, float, int], rng: BatchRNG
) -> torch.Tensor:
    """Water or mud spatter (Hendrycks & Dietterich, 2019, ICLR), as imagecorruptions 1.1.2.

    Given the same noise field, the result is the reference's pixel for pixel, before the
    reference's final truncation to uint8 levels (which this output skips): Canny, the 5x5 chamfer
    distance transform, the box blurs, histogram equalisation and emboss reproduce OpenCV's
    integer and float32 arithmetic exactly (checked against cv2), the field is float64 as in the
    reference, and hysteresis runs to convergence. Departures: the noise comes from ``rng``, not
    NumPy's global generator; field values above 1 saturate at level 255 where NumPy's uint8
    cast would wrap them; the mud blend is float32 (the reference's is float64: at most one
    uint8 level apart); an image with no liquid at all stays clean, where the reference divides
    0 by 0 and returns NaN (black after its uint8 cast).

    Args:
        images: float32 ``(B, 3, H, W)`` RGB in [0, 1], on any device.
        params: ``(loc, scale, sigma, threshold, intensity, mud)``, a row of
            :data:`SPATTER_TABLES`; ``mud`` is 0 for water, 1 for mud.
        rng: per-sample random streams; one ``normal(H, W)`` draw is taken.

    Returns:
        float32 ``(B, 3, H, W)`` in [0, 1].
    """
    loc, scale, sigma, threshold, intensity, mud = params
    h, w = images.shape[-2:]
    layer = gaussian_blur(_field(rng.normal(h, w).to(images.device), scale, loc), sigma)
    if mud:
        return _mud(images, layer, threshold, intensity)
    return _water(images, layer, threshold, intensity)


def spatter_each(images: torch.Tensor, table: tuple[tuple[float, float, float, float, float, int], ...],
                 severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
    """:func:`spatter` of image ``b`` with ``table[severities[b] - 1]``, pixel for pixel, in one
    pass: one noise field and blur for the whole batch, then its water images together and its
    mud images together. ``severities``: int64 ``(B,)`` on the CPU."""
    h, w = images.shape[-2:]
    float64 = torch.empty(0, dtype=torch.float64, device=images.device)

    def each(column: int, rows: torch.Tensor = severities, like: torch.Tensor = float64) -> torch.Tensor:
        return Distortion.per_sample([row[column] for row in table], rows, like)

    which = Distortion.severity_index(severities, images.device)
    field = _field(rng.normal(h, w).to(images.device), each(1), each(0))
    layer = gaussian_blur_each(field, tuple(row[2] for row in table), which)
    del field  # batch-sized: freed before the corruption's own buffers are taken
    mud = torch.tensor([row[5] for row in table])[severities - 1].bool()
    out = torch.empty_like(images) if bool(mud.any()) and not bool(mud.all()) else None
    for is_mud in (False, True):
        rows = (mud == is_mud).nonzero().flatten()
        if rows.numel() == 0:
            continue
        part, index = severities[rows], to_device(rows, images.device)
        x, field_part = (images, layer) if out is None else (images[index], layer[index])
        if is_mud:
            intensities = tuple(row[4] for row in table)
            result = _mud(x, field_part, each(3, part), intensities, which.index_select(0, index))
        else:
            result = _water(x, field_part, each(3, part), each(4, part, images))
        if out is None:
            return result
        out.index_copy_(0, index, result)
    return out


def _field(noise: torch.Tensor, scale: float | torch.Tensor, loc: float | torch.Tensor) -> torch.Tensor:
    """The unblurred field ``noise * scale + loc``, ``(B, 1, H, W)`` float64 like the reference's
    (it is later cut at a threshold and cast to uint8 levels), from float32 draws ``(B, H, W)``;
    ``scale`` and ``loc``: scalars or ``(B, 1, 1, 1)``."""
    if native.takes(noise):  # one pass in C
        return cpu_kernels.affine_f64(noise, scale, loc)[:, None]
    if not isinstance(scale, torch.Tensor):  # a float32 tensor times a float64 one of 4 dims: a float64 product
        scale = torch.full((1, 1, 1, 1), scale, dtype=torch.float64, device=noise.device)
    return (noise[:, None] * scale).add_(loc)


def _mud(images: torch.Tensor, layer: torch.Tensor, threshold: float | torch.Tensor,
         intensity: float | tuple[float, ...], which: torch.Tensor | None = None) -> torch.Tensor:
    """Opaque brown blobs where the field exceeds the threshold, with blurred, cut-off edges
    (blurred with sigma ``intensity``, or ``intensity[which[b]]`` for image ``b``)."""
    # float64, as scipy accumulates (and float32 convolutions may round by batch size).
    mask = (layer > threshold).double()
    m = (gaussian_blur(mask, intensity) if which is None else gaussian_blur_each(mask, intensity, which)).to(images.dtype)
    m = torch.where(m < 0.8, 0.0, m)
    colour = constant(_MUD, images.device, images.dtype).view(1, 3, 1, 1)
    return (images * (1 - m) + colour * m).clamp_(0.0, 1.0)


def _water(images: torch.Tensor, layer: torch.Tensor, threshold: float | torch.Tensor,
           intensity: float | torch.Tensor) -> torch.Tensor:
    """Embossed pale-turquoise droplets where the blurred field reaches ``threshold``: the
    reference's Canny / distance / equalise / emboss chain."""
    if native.takes(images) and layer.dtype == torch.float64:  # the same steps, an image at a time in C
        return cpu_kernels.spatter_water(images, layer, threshold, intensity, _WATER)
    layer = torch.where(layer < threshold, 0.0, layer)
    level = (layer * 255).floor_().clamp_(0, 255).float()  # astype(uint8), saturating
    dist = _truncated_distance(_canny(level, 50, 150))
    colour = constant(_WATER, images.device, images.dtype)
    finished = _spatter_fused.water_finish(dist, level, images, intensity, colour)
    if finished is not None:  # a GPU's kernels for the rest
        return finished
    dist = (_box_sum3(dist.double()) * (1 / 9)).float().floor_()  # cv2.blur on float32, astype(uint8)
    dist = _equalize_hist(dist, _MAX_DIST)
    emboss = constant(_EMBOSS, dist.device, dist.dtype)  # cv2.filter2D correlates: no flip
    dist = correlate(pad(dist, (1, 1, 1, 1), "reflect101"), emboss).clamp_(0, 255)
    dist = torch.div(_box_sum3(dist) + 4, 9, rounding_mode="floor")  # uint8 cv2.blur rounds the mean
    m = level * dist
    peak = m.amax(dim=(2, 3), keepdim=True)
    # The reference divides by the peak unguarded; no liquid at all means no spatter here.
    m = torch.where(peak > 0, m / peak.clamp_min(1), 0.0) * intensity
    return (images + m * colour.view(1, 3, 1, 1)).clamp_(0.0, 1.0)


def _box_sum3(x: torch.Tensor) -> torch.Tensor:
    """3x3 window sums of ``(B, 1, H, W)`` with border reflect-101 (cv2.blur's default border)."""
    p = pad(x, (1, 1, 1, 1), "reflect101")
    rows = p[..., :-2, :] + p[..., 1:-1, :] + p[..., 2:, :]  # separable: cheaper than conv2d here
    return rows[..., :-2] + rows[..., 1:-1] + rows[..., 2:]


def _canny(level: torch.Tensor, low: int, high: int) -> torch.Tensor:
    """cv2.Canny(level, low, high) on integer-valued ``(B, 1, H, W)``: edge mask.

    3x3 Sobel gradients (border replicate, as OpenCV), L1 magnitude, OpenCV's non-maximum
    suppression, then hysteresis; magnitudes must exceed ``low`` / ``high`` strictly. On a GPU
    fused kernels (:mod:`._spatter_fused`) take both parts where they can.
    """
    codes = _spatter_fused.canny_codes(level, low, high)
    if codes is not None:
        edges = _spatter_fused.hysteresis(codes)
        if edges is not None:
            return edges
        return _hysteresis(codes == 2, codes > 0)
    p = pad(level, (1, 1, 1, 1), "replicate").to(torch.int32)
    # Separable 3x3 Sobel: a central difference along one axis, (1, 2, 1) smoothing along the other.
    dx, dy = p[..., 2:] - p[..., :-2], p[..., 2:, :] - p[..., :-2, :]
    gx = dx[..., :-2, :] + 2 * dx[..., 1:-1, :] + dx[..., 2:, :]
    gy = dy[..., :-2] + 2 * dy[..., 1:-1] + dy[..., 2:]
    mag = gx.abs() + gy.abs()
    keep = _non_max_suppression(gx, gy, mag) & (mag > low)
    return _hysteresis(keep & (mag > high), keep)


def _non_max_suppression(gx: torch.Tensor, gy: torch.Tensor, mag: torch.Tensor) -> torch.Tensor:
    """OpenCV's Canny non-maximum suppression, integer-exact.

    The gradient direction is binned by fixed-point tan(22.5) / tan(67.5) tests; a pixel must beat
    its two neighbours along it, strictly on the left / upper side only for the axis directions
    (so a two-pixel-wide ridge keeps exactly the pixel OpenCV keeps). Outside the image counts 0.
    """
    h, w = mag.shape[-2:]
    padded = F.pad(mag, (1, 1, 1, 1))

    def at(dy: int, dx: int) -> torch.Tensor:
        return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    ax, ay = gx.abs(), gy.abs() << 15
    tg22 = ax * _TG22
    horizontal, vertical = ay < tg22, ay > tg22 + (ax << 16)
    same_sign = (gx < 0) == (gy < 0)  # OpenCV: s = (xs ^ ys) < 0 ? -1 : 1
    before = torch.where(same_sign, at(-1, -1), at(-1, 1))
    after = torch.where(same_sign, at(1, 1), at(1, -1))
    diagonal = (mag > before) & (mag > after)
    return torch.where(
        horizontal,
        (mag > at(0, -1)) & (mag >= at(0, 1)),
        torch.where(vertical, (mag > at(-1, 0)) & (mag >= at(1, 0)), diagonal),
    )


def _hysteresis(strong: torch.Tensor, weak: torch.Tensor, rounds_per_check: int | None = None) -> torch.Tensor:
    """Pixels of ``weak`` 8-connected through ``weak`` to a ``strong`` one (``strong`` within ``weak``).

    Grown a ring at a time until nothing changes, which is exact (as OpenCV's stack-based
    tracing) whatever the length of a weak chain. Only the weak-but-not-strong pixels can change,
    and they are few, so each round gathers just their 8 neighbours, over the whole batch. How
    many rounds a batch needs is known only on the device: the host reads back whether anything
    grew once every ``rounds_per_check`` rounds (default: every round on the CPU, every 8 on a
    GPU; rounds past the fixed point change nothing), so it waits for the device rarely.
    """
    b, _, h, w = strong.shape
    edges = strong.new_zeros(b, 1, h + 2, w + 2)  # a zero frame: neighbours never cross images
    edges[..., 1:-1, 1:-1] = strong
    flat = edges.view(-1)
    pending = torch.zeros_like(edges)
    pending[..., 1:-1, 1:-1] = weak & ~strong
    pending = pending.view(-1).nonzero().squeeze(1)
    if pending.numel() == 0:
        return edges[..., 1:-1, 1:-1]
    offsets = constant((-w - 3, -w - 2, -w - 1, -1, 1, w + 1, w + 2, w + 3), strong.device, torch.int64)
    neighbours = pending[:, None] + offsets
    if rounds_per_check is None:
        rounds_per_check = 1 if strong.device.type == "cpu" else 8
    grown = 0
    while True:
        for _ in range(rounds_per_check):
            flat[pending] = flat[neighbours].any(dim=1) | flat[pending]
        count = int(flat[pending].sum())  # the host waits here, once per check
        if count == grown:
            return edges[..., 1:-1, 1:-1]
        grown = count


def _truncated_distance(edges: torch.Tensor) -> torch.Tensor:
    """cv2.distanceTransform(non-edges, DIST_L2, 5), truncated at 20, for ``(B, 1, H, W)`` masks.

    The distance is the minimum over edge pixels of the tabulated length of the offset to them
    (:func:`_chamfer_table`). That length grows with |dx| at fixed dy, so in each row only the
    nearest edge on either side can be the minimum (found by running max / min of edge columns),
    and only rows within 20 px count: separable, batched, and bit-exact with OpenCV.
    """
    fused = _spatter_fused.truncated_distance(edges, _chamfer_pairs(edges.device))
    if fused is not None:  # a GPU's two kernels
        return fused
    b, _, h, w = edges.shape
    rows = edges[:, 0].transpose(0, 1)  # (H, B, W): a shift by whole rows is then a flat offset
    cols = torch.arange(w, device=edges.device)
    far = w + _REACH
    left = cols - torch.where(rows, cols, -far).cummax(dim=-1).values
    right = torch.where(rows, cols, w + far).flip(-1).cummin(dim=-1).values.flip(-1) - cols
    pair = left.clamp_(max=_REACH) * (_REACH + 1) + right.clamp_(max=_REACH)
    none = pair.new_full((_MAX_DIST, b, w), (_REACH + 1) ** 2 - 1)  # rows beyond the image
    pair = torch.cat([none, pair, none]).view(-1)
    table = _chamfer_pairs(edges.device)
    size = h * b * w
    dist = torch.full((size,), float(_MAX_DIST), device=edges.device)
    for dy in range(-_MAX_DIST, _MAX_DIST + 1):  # edges in row i - dy, for every row i
        source = pair[(_MAX_DIST - dy) * b * w :][:size]
        torch.minimum(dist, table[dy + _MAX_DIST].index_select(0, source), out=dist)
    return dist.view(h, b, 1, w).permute(1, 2, 0, 3)


@functools.cache
def _chamfer_pairs(device: torch.device) -> torch.Tensor:
    """Per row offset dy, the nearer of two edges ``left`` px left / ``right`` px right of a
    column, indexed ``[dy + 20, left * 22 + right]``; gaps of 21 stand for none within reach."""
    table = torch.from_numpy(_chamfer_table()).to(device)  # [dy + 20, dx + 21]
    gaps = torch.arange(_REACH + 1, device=device)
    from_left, from_right = table[:, _REACH + gaps], table[:, _REACH - gaps]
    return torch.minimum(from_left[:, :, None], from_right[:, None, :]).flatten(1)


@functools.lru_cache(maxsize=1)
def _chamfer_table() -> np.ndarray:
    """OpenCV's 5x5 chamfer distance from one edge pixel to the offset (dy, dx), float32,
    indexed ``[dy + 20, dx + 21]``.

    Computed as OpenCV does (a forward and a backward raster pass over float32 sums of the step
    lengths 1, 1.4 and 2.1969), so that even its rounding is reproduced: a sum that should be an
    integer may land just below it, which matters to the later truncation to uint8.
    """
    f = np.float32
    steps = ((-2, -1, f(2.1969)), (-2, 1, f(2.1969)), (-1, -2, f(2.1969)), (-1, -1, f(1.4)),
             (-1, 0, f(1.0)), (-1, 1, f(1.4)), (-1, 2, f(2.1969)), (0, -1, f(1.0)))
    rows, cols = 2 * _MAX_DIST + 1, 2 * _REACH + 1
    t = np.full((rows + 4, cols + 4), f(np.inf), np.float32)  # 2-px border that never updates
    t[_MAX_DIST + 2, _REACH + 2] = 0
    order = [(i, j) for i in range(2, rows + 2) for j in range(2, cols + 2)]
    for sign, pixels in ((1, order), (-1, order[::-1])):
        for i, j in pixels:
            t[i, j] = min([t[i, j]] + [f(t[i + sign * di, j + sign * dj] + w) for di, dj, w in steps])
    return t[2:-2, 2:-2]


def _equalize_hist(x: torch.Tensor, top: int) -> torch.Tensor:
    """cv2.equalizeHist per image, for ``(B, 1, H, W)`` integer values in 0..top.

    OpenCV's table: with v0 the lowest value present, v -> round((cdf(v) - cdf(v0)) * 255 /
    (N - count(v0))) in float32, ties to even; an image of one value keeps it.
    """
    flat = x.flatten(1).long()
    hist = torch.zeros(x.shape[0], top + 1, dtype=torch.int64, device=x.device)
    hist.scatter_add_(1, flat, torch.ones_like(flat))
    values = torch.arange(top + 1, device=x.device)
    first = torch.where(hist > 0, values, top + 1).amin(dim=1, keepdim=True)  # lowest value present
    base = hist.gather(1, first)
    total = flat.shape[1]
    count = (total - base).clamp_min(1).float()
    scale = torch.full_like(count, 255.0) / count  # a true float32 division (255.0 / t is not)
    lut = torch.round((hist.cumsum(1) - base).float() * scale).clamp_(0, 255)
    lut = torch.where(base == total, first.float(), lut)
    return lut.gather(1, flat).view_as(x)
