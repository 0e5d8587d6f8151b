"""Blur corruptions (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR), with the parameters of ImageNet-C and CIFAR-10-C.

Each follows the reference generator (``imagecorruptions`` 1.1.2 for ImageNet-C, Hendrycks'
CIFAR-10-C script for the 32-px table) step by step, batched: images of 96 px and up use the
ImageNet-C parameters, smaller ones the CIFAR-10-C parameters.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
import torch.nn.functional as F

from robench import cpu_kernels, native
from robench.api import SEVERITY_TABLES, BatchRNG, Distortion, hookimpl, to_device
from robench.fused import FusedKernel, tl, triton
from robench_plugins.distortions import _device
from robench_plugins.distortions._filters import (
    disk_blur_in_c,
    disk_kernel,
    filter2d,
    gaussian_blur_each,
    pad,
    trim_zero_border,
)
from robench_plugins.distortions._glass import local_copies
from robench_plugins.distortions._parametric import MixedPass

# sigma of the Gaussian blur
_GAUSSIAN = {"imagenet-c": (1.0, 2.0, 3.0, 4.0, 6.0), "cifar-10-c": (0.4, 0.6, 0.7, 0.8, 1.0)}
# (disk radius, anti-alias sigma of the disk)
_DEFOCUS = {
    "imagenet-c": ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5)),
    "cifar-10-c": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)),
}
# (sigma, max pixel shift, iterations)
_GLASS = {
    "imagenet-c": ((0.7, 1, 2), (0.9, 2, 1), (1, 2, 3), (1.1, 3, 2), (1.5, 4, 2)),
    "cifar-10-c": ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)),
}
# (radius, sigma) of the motion kernel
_MOTION = {
    "imagenet-c": ((10, 3), (15, 5), (15, 8), (15, 12), (20, 15)),
    "cifar-10-c": ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)),
}
# zoom factors averaged with the image (np.arange, as the references write them)
_ZOOM = {
    "imagenet-c": tuple(tuple(np.arange(1, stop, step).tolist()) for stop, step in
                        ((1.11, 0.01), (1.16, 0.01), (1.21, 0.02), (1.26, 0.02), (1.31, 0.03))),
    "cifar-10-c": tuple(tuple(np.arange(1, stop, 0.01).tolist()) for stop in (1.06, 1.11, 1.16, 1.21, 1.26)),
}


class GaussianBlur(_device.WholeBatchInC, MixedPass):
    """Gaussian blur with edge replication (the ImageNet-C validation blur).

    As ``skimage.filters.gaussian`` in the reference: mode ``nearest``, kernel truncated at 4 sigma.
    On the CPU, images 128 px wide and up are blurred by direct sums in C (``_filters``).
    """

    name = "gaussian_blur"
    group = "blur"
    tables = SEVERITY_TABLES

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        sigmas = _GAUSSIAN[self.table(*images.shape[-2:])]
        return gaussian_blur_each(images, sigmas, self.severity_index(severities, images.device), clamp=True)


class DefocusBlur(_device.WholeBatchInC, Distortion):
    """Defocus: convolution with an anti-aliased disk (OpenCV reflect-101 borders, as the reference).

    On the CPU the disk is summed in C (``_filters.disk_sums``): the small Gaussian, then box sums
    along the disk's rows, about 4 additions per pixel per unit of radius instead of the kernel's
    (2 radius + 3)^2 multiply-adds.
    """

    name = "defocus_blur"
    group = "blur"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        radius, alias = _DEFOCUS[self.table(*images.shape[-2:])][severity - 1]
        if native.takes(images):
            return disk_blur_in_c(images, radius, alias)
        return filter2d(images, _defocus_kernel(radius, alias, images.device, images.dtype)).clamp_(0.0, 1.0)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        # each severity's disk, zero-bordered to the largest present: one filter per image
        if native.takes(images):  # each severity's images in one call of its own
            return self.apply_grouped(images, severities, rng)
        table = _DEFOCUS[self.table(*images.shape[-2:])]
        present = tuple(torch.unique(severities.cpu()).tolist())
        kernels = _defocus_kernels(tuple(table[s - 1] for s in present), images.device, images.dtype)
        if _device.launch_bound(images.device) == (kernels.shape[-1] > 15):
            # Each severity's images with their own smaller disk: on the CPU where the filter is
            # direct (its work grows with the disk; larger ones go through an FFT, which does not
            # care), on a GPU where the largest disk is large (ImageNet-C's 21 x 21: one pass
            # 59,000-63,000 img/s, grouped 65,000-92,000 on an H200 at 224 px; at 32 px one pass
            # is 5x faster).
            return self.apply_grouped(images, severities, rng)
        slot = self.per_sample([present.index(s) if s in present else 0 for s in range(1, 6)], severities, images)
        return filter2d(images, kernels.index_select(0, slot.view(-1))).clamp_(0.0, 1.0)


class GlassBlur(_device.WholeBatchInC, MixedPass):
    """Frosted glass: blur, then local random pixel displacement, then blur again.

    The displacement is the reference's exact procedure, including its well-known quirk: the
    scan (bottom-right to top-left) meant to swap each pixel with a random neighbour within the
    shift range, but numpy's tuple swap of two views copies the neighbour into the pixel and
    leaves the neighbour as it was. The published ImageNet-C and CIFAR-10-C images were made
    that way, so robench copies too. Each copy sees the previous ones, so the scan looks
    sequential; but every pixel's final value is an original pixel at the end of a chain of
    copies, and robench finds all chains' ends at once by pointer doubling (a few dozen batched
    gathers instead of one step per pixel or per wavefront). The intermediate image is truncated
    to uint8 levels, as in the reference.
    """

    name = "glass_blur"
    group = "blur"
    tables = SEVERITY_TABLES

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        table = _GLASS[self.table(*images.shape[-2:])]
        present = torch.unique(severities.cpu()).tolist()
        shifts = {table[severity - 1][1] for severity in present}
        if len(shifts) > 1:  # the scan's region depends on the shift (ImageNet-C): apart
            return self.apply_grouped(images, severities, rng)
        sigmas = tuple(sigma for sigma, _, _ in table)
        which = self.severity_index(severities, images.device)
        blurred = gaussian_blur_each(images, sigmas, which, levels=True)  # the reference's uint8 image
        counts = [table[severity - 1][2] for severity in present]
        # images with fewer iterations than others in the batch ignore the later draws
        each = self.per_sample([count for _, _, count in table], severities, images).view(-1) \
            if len(set(counts)) > 1 else None
        displaced = local_copies(blurred, shifts.pop(), max(counts), rng, each)
        return gaussian_blur_each(displaced, sigmas, which, clamp=True)


class MotionBlur(_device.WholeBatchInC, MixedPass):
    """Motion blur along a random angle in [-45, 45] degrees per image.

    A Gaussian-weighted line kernel built from edge-replicating shifts, exactly as the
    reference's ``_motion_blur``.
    """

    name = "motion_blur"
    group = "blur"
    tables = SEVERITY_TABLES

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        angle = rng.uniform(1)[:, 0] * 90 - 45
        weights = motion_weights(_MOTION[self.table(*images.shape[-2:])], severities, images.device)
        return motion_blur(images, weights, angle, clamp=True)


class ZoomBlur(_device.WholeBatchInC, Distortion):
    """Zoom blur: the mean of the image and its centre zooms.

    One zoom per factor of the table, with linear interpolation and aligned corners as
    ``scipy.ndimage.zoom``; each reference's way of cutting the zoom back to size.
    """

    name = "zoom_blur"
    group = "blur"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        table = self.table(*images.shape[-2:])
        if native.takes(images):  # the sum, the division and the clamp in one C loop
            factors = _ZOOM[table][severity - 1]
            return _zoom_in_c(images, factors, table == "cifar-10-c", len(factors) + 1.0)
        total = zoom_total(images, _ZOOM[table][severity - 1], centre_trim=table == "cifar-10-c")
        # a divisor tensor: CUDA would multiply by the reciprocal of a Python scalar
        count = torch.full((), len(_ZOOM[table][severity - 1]) + 1.0, device=images.device)
        return (total / count).clamp_(0.0, 1.0)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        # Every factor of the severities present, ascending; each image adds its own factors'
        # zooms in the same order as alone (adding an exact zero for the others changes nothing).
        table = self.table(*images.shape[-2:])
        factors = _ZOOM[table]
        present = torch.unique(severities.cpu()).tolist()
        union = sorted({f for severity in present for f in factors[severity - 1]})
        nested = len(union) == max(len(factors[severity - 1]) for severity in present)
        if not (nested and _device.launch_bound(images.device)):
            # every image zoomed at every factor costs more work than it saves kernel launches,
            # unless launches dominate and the lists are nested (not ImageNet-C's steps)
            return self.apply_grouped(images, severities, rng)
        # uses[b, i]: 1 where image b's severity zooms by union[i], sent to the device at once
        uses = torch.tensor([[float(factor in f) for factor in union] for f in factors], dtype=images.dtype)
        uses = to_device(uses[severities.cpu() - 1], images.device)
        total = zoom_total(images, tuple(union), centre_trim=table == "cifar-10-c", uses=uses)
        counts = self.per_sample([float(len(f) + 1) for f in factors], severities, images)
        return (total / counts).clamp_(0.0, 1.0)


def motion_blur(images: torch.Tensor, weights: torch.Tensor, angle: torch.Tensor, clamp: bool = False) -> torch.Tensor:
    """The reference's ``_motion_blur`` for ``(B, C, H, W)`` images and one angle (degrees) per
    image: a weighted sum of the image shifted along the angle with edges replicated, stopping
    where a shift leaves the image. Computed as one FFT convolution of the edge-padded images
    with a per-image kernel holding each shift's weight; on the CPU (float32, kernels in C) as the
    reference's direct sum, the shifts read in place.

    ``weights``: float64 ``(B, K)``, image ``b``'s weight of the shift by ``k`` pixels
    (:func:`motion_weights`; zeros past an image's own kernel length). ``clamp``: clamp the result
    to [0, 1] (in C, as each row is written: no second pass)."""
    b, c, h, w = images.shape
    width = weights.shape[1]
    steps = torch.arange(width, device=images.device, dtype=torch.float64)
    rad = torch.deg2rad(angle.to(torch.float64))
    dy = -torch.ceil(steps[None] * torch.sin(rad)[:, None] - 0.5).to(torch.int64)  # (B, width)
    dx = -torch.ceil(steps[None] * torch.cos(rad)[:, None] - 0.5).to(torch.int64)
    inside = ((dy.abs() < h) & (dx.abs() < w)).cumprod(1)  # the reference stops at the first exit
    if native.takes(images):  # the reference's direct sum, a row at a time in C
        return cpu_kernels.motion_blur(images, weights * inside, dy, dx, clamp)
    reach = min(width, max(h, w))
    dy, dx = dy.clamp(-reach, reach), dx.clamp(-reach, reach)
    kernel = torch.zeros(b, 2 * reach + 1, 2 * reach + 1, dtype=torch.float64, device=images.device)
    batch = torch.arange(b, device=images.device)[:, None].expand(-1, width)
    kernel.index_put_((batch, dy + reach, dx + reach), weights * inside, accumulate=True)
    padded = pad(images, (reach, reach, reach, reach), "replicate")
    size = padded.shape[-2:]
    spectrum = torch.fft.rfft2(kernel.to(images.dtype), s=size)[:, None]
    out = torch.fft.irfft2(torch.fft.rfft2(padded) * spectrum, s=size)
    # circular convolution: output (y, x) of the padded frame sits at (y + 2 * reach, ...)
    out = out[..., 2 * reach : 2 * reach + h, 2 * reach : 2 * reach + w]
    return out.clamp_(0.0, 1.0) if clamp else out


def motion_weights(table: tuple[tuple[int, float], ...], severities: torch.Tensor,
                   device: torch.device) -> torch.Tensor:
    """Each image's motion-blur weights for its severity's (radius, sigma) in ``table``, float64
    ``(B, K)`` on ``device`` with K the table's longest kernel: every severity shares one kernel
    size, so an image's blur does not depend on the severities beside it."""
    return _motion_weight_table(table, device).index_select(0, Distortion.severity_index(severities, device))


@functools.lru_cache(maxsize=16)
def _motion_weight_table(table: tuple[tuple[int, float], ...], device: torch.device) -> torch.Tensor:
    """The reference's weights exp(-k^2 / (2 sigma^2)), k = 0..2 radius, normalised, of each
    (radius, sigma), zero-padded to the longest: ``(S, K)`` float64."""
    width = max(2 * radius + 1 for radius, _ in table)
    rows = torch.zeros(len(table), width, dtype=torch.float64)
    for row, (radius, sigma) in enumerate(table):
        weights = torch.exp(-torch.arange(2 * radius + 1, dtype=torch.float64) ** 2 / (2 * sigma**2))
        rows[row, : 2 * radius + 1] = weights / weights.sum()
    return rows.to(device)


def clipped_zoom(images: torch.Tensor, factor: float, centre_trim: bool = False) -> torch.Tensor:
    """The references' ``clipped_zoom``: crop the centre ``ceil(size / factor)``, zoom it by
    ``factor`` (output ``round(crop * factor)``, linear, corners aligned) and cut back to
    ``size``: from the top-left in ``imagecorruptions`` (ImageNet-C), from the centre in the
    CIFAR-10-C script (``centre_trim``)."""
    h, w = images.shape[-2:]
    top, left, ch, cw, out_h, out_w, trim_top, trim_left = _zoom_geometry(h, w, factor, centre_trim)
    crop = images[..., top : top + ch, left : left + cw]
    zoomed = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", align_corners=True)
    return zoomed[..., trim_top : trim_top + h, trim_left : trim_left + w]


def _zoom_geometry(h: int, w: int, factor: float, centre_trim: bool) -> tuple[int, ...]:
    """:func:`clipped_zoom`'s crop (top, left, height, width), zoomed size and cut offsets."""
    ch, cw = math.ceil(h / factor), math.ceil(w / factor)
    out_h, out_w = int(round(ch * factor)), int(round(cw * factor))
    trim = ((out_h - h) // 2, (out_w - w) // 2) if centre_trim else (0, 0)
    return ((h - ch) // 2, (w - cw) // 2, ch, cw, out_h, out_w, *trim)


def zoom_total(images: torch.Tensor, factors: tuple[float, ...], centre_trim: bool = False,
               uses: torch.Tensor | None = None) -> torch.Tensor:
    """``images`` plus its :func:`clipped_zoom` by each factor, added in order; image ``b``'s
    zoom by ``factors[i]`` weighted by ``uses[b, i]`` (0 or 1) if given. On a GPU one fused
    kernel interpolates every zoom of a pixel in registers (torch's bilinear arithmetic, FMAs
    included) instead of one interpolation and one addition per factor (on the CPU,
    ``ZoomBlur.apply`` takes :func:`_zoom_in_c` instead)."""
    b, c, h, w = images.shape
    if _ZOOM_KERNEL.available(images.device) and images.dtype == torch.float32 and factors:
        geometry = [_zoom_geometry(h, w, f, centre_trim) for f in factors]
        ints = _device.constant(tuple(v for g in geometry for v in (g[0], g[1], g[2], g[3], g[6], g[7])),
                                images.device, torch.int32)
        scales = _device.constant(tuple(v for g in geometry for v in _align_corners_scales(*g[2:6])),
                                  images.device, torch.float32)
        x = images.contiguous()
        out = torch.empty_like(x)
        if _ZOOM_KERNEL.launch(_zoom_kernel, x.numel(), 256, x, ints, scales, uses if uses is not None else x, out,
                               x.numel(), h, w, c, FACTORS=len(factors), USES=uses is not None,
                               enable_fp_fusion=False):
            return out
    total = images.clone()
    for i, factor in enumerate(factors):
        zoomed = clipped_zoom(images, factor, centre_trim)
        total += zoomed if uses is None else zoomed * uses[:, i, None, None, None]
    return total


def _zoom_in_c(images: torch.Tensor, factors: tuple[float, ...], centre_trim: bool, divisor: float = 0.0) -> torch.Tensor:
    """:func:`zoom_total` in C on the CPU (each resize rounded as torch's CPU kernel for it); with
    a positive ``divisor``, ZoomBlur's output: the total / divisor, clamped to [0, 1]."""
    h, w = images.shape[-2:]
    geometry = [_zoom_geometry(h, w, f, centre_trim) for f in factors]
    ints = torch.tensor([(*g[:4], *g[6:], _channels_last_resize(g[4], g[5], images.shape[1])) for g in geometry],
                        dtype=torch.int32)
    scales = torch.tensor([_align_corners_scales(*g[2:6]) for g in geometry], dtype=torch.float32)
    return cpu_kernels.zoom_total(images, ints, scales, divisor)


def _channels_last_resize(out_h: int, out_w: int, channels: int) -> bool:
    """Whether torch's CPU bilinear resize to (out_h, out_w) takes its channels-last kernel (other
    roundings than its generic one): for outputs of at most 128 rows plus columns, and for
    three-channel images when torch runs on one thread (``upsample_bilinear2d_kernel_impl_float``)."""
    return out_h + out_w <= 128 or (torch.get_num_threads() == 1 and channels == 3)


def _align_corners_scales(ch: int, cw: int, out_h: int, out_w: int) -> tuple[float, float]:
    """torch's float32 source-index scales of an align-corners resize from (ch, cw) to (out_h, out_w)."""
    def scale(size: int, out: int) -> float:
        return float(np.float32(size - 1) / np.float32(out - 1)) if out > 1 else 0.0

    return scale(ch, out_h), scale(cw, out_w)


_ZOOM_KERNEL = FusedKernel("zoom blur")

if triton is not None:

    @triton.jit(do_not_specialize=["total", "h", "w", "channels"])
    def _zoom_kernel(x_ptr, ints_ptr, scales_ptr, uses_ptr, out_ptr, total, h, w, channels,
                     FACTORS: tl.constexpr, USES: tl.constexpr, BLOCK: tl.constexpr):
        """:func:`zoom_total` per output value: torch's align-corners bilinear interpolation of
        each factor's crop, rounded as ``fma(h0, fma(w0, a, w1 * b), h1 * fma(w0, c, w1 * d))``
        (torch's kernels compile to that: the H200 runs gave the CPU's output bit for bit at
        224 px), the zooms added in order."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        plane, pixel = lane // (h * w), lane % (h * w)
        y, x = pixel // w, pixel % w
        base = x_ptr + plane * h * w
        acc = tl.load(x_ptr + lane, mask=mask, other=0.0)
        for k in tl.static_range(FACTORS):
            top = tl.load(ints_ptr + k * 6)
            left = tl.load(ints_ptr + k * 6 + 1)
            crop_h = tl.load(ints_ptr + k * 6 + 2)
            crop_w = tl.load(ints_ptr + k * 6 + 3)
            source_y = tl.load(scales_ptr + k * 2) * (y + tl.load(ints_ptr + k * 6 + 4)).to(tl.float32)
            source_x = tl.load(scales_ptr + k * 2 + 1) * (x + tl.load(ints_ptr + k * 6 + 5)).to(tl.float32)
            y0, x0 = source_y.to(tl.int32), source_x.to(tl.int32)
            dy = tl.where(y0 < crop_h - 1, w, 0)
            dx = tl.where(x0 < crop_w - 1, 1, 0)
            wy1 = source_y - y0.to(tl.float32)
            wx1 = source_x - x0.to(tl.float32)
            wy0, wx0 = 1.0 - wy1, 1.0 - wx1
            at = base + (top + y0) * w + left + x0
            a = tl.load(at, mask=mask, other=0.0)
            b = tl.load(at + dx, mask=mask, other=0.0)
            c = tl.load(at + dy, mask=mask, other=0.0)
            d = tl.load(at + dy + dx, mask=mask, other=0.0)
            value = tl.fma(wy0, tl.fma(wx0, a, wx1 * b), wy1 * tl.fma(wx0, c, wx1 * d))
            if USES:
                value = value * tl.load(uses_ptr + (plane // channels) * FACTORS + k, mask=mask, other=0.0)
            acc += value
        tl.store(out_ptr + lane, acc, mask=mask)


@functools.lru_cache(maxsize=64)
def _defocus_kernel(radius: float, alias: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The defocus disk (:func:`disk_kernel`), zero border trimmed, on ``device``."""
    return trim_zero_border(disk_kernel(radius, alias)).to(device=device, dtype=dtype)


@functools.lru_cache(maxsize=64)
def _defocus_kernels(params: tuple[tuple[float, float], ...], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """The defocus kernels of several (radius, alias) pairs, each zero-bordered to the largest:
    ``(S, K, K)``."""
    kernels = [trim_zero_border(disk_kernel(radius, alias)) for radius, alias in params]
    size = max(k.shape[0] for k in kernels)
    return torch.stack([F.pad(k, [(size - k.shape[0]) // 2] * 4) for k in kernels]).to(device=device, dtype=dtype)


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [GaussianBlur, DefocusBlur, GlassBlur, MotionBlur, ZoomBlur]
