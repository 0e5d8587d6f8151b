"""Batched image filters shared by the corruptions: Gaussian blur with scikit-image/scipy
semantics, and padding helpers. Images are float ``(B, C, H, W)`` on any device."""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import torch.nn.functional as F

from robench import cpu_kernels, native
from robench.fused import FusedKernel, tl, triton


def gaussian_kernel1d(sigma: float, truncate: float = 4.0, device=None, dtype=torch.float32) -> torch.Tensor:
    """scipy.ndimage's 1-D Gaussian: radius ``int(truncate * sigma + 0.5)``, normalised."""
    radius = int(truncate * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype)


def gaussian_blur(
    images: torch.Tensor, sigma: float | tuple[float, float], mode: str = "replicate", truncate: float = 4.0
) -> torch.Tensor:
    """Separable Gaussian blur, as ``scipy.ndimage.gaussian_filter`` over the last two axes.

    Each axis is one multiplication by a banded matrix with the border folded in, which BLAS
    runs several times faster than a convolution on CPU and GPU alike.

    Args:
        images: ``(..., H, W)``.
        sigma: standard deviation in pixels, or (rows, columns).
        mode: border handling: ``"replicate"`` (scipy ``nearest``, skimage's default),
            ``"symmetric"`` (scipy ``reflect``) or ``"reflect101"`` (scipy ``mirror``).
        truncate: kernel radius in sigmas.
    """
    if _in_c(images):  # a direct sum in C
        return _native_blur(images.reshape(-1, *images.shape[-2:]), (sigma,), None, mode, truncate).view_as(images)
    if _fused(images):  # the same direct sum in a GPU's kernels
        flat = images.reshape(-1, *images.shape[-2:])
        blurred = _fused_blur(flat, (sigma,), None, mode, truncate)
        if blurred is not None:
            return blurred.view_as(images)
    sigma_y, sigma_x = sigma if isinstance(sigma, tuple) else (sigma, sigma)
    h, w = images.shape[-2:]
    rows = filter_matrix(h, _gaussian_taps(sigma_y, truncate), mode, images.device, images.dtype)
    cols = filter_matrix(w, _gaussian_taps(sigma_x, truncate), mode, images.device, images.dtype)
    return rows @ images @ cols.T


def gaussian_blur_each(
    images: torch.Tensor, sigmas: tuple[float | tuple[float, float], ...], which: torch.Tensor,
    mode: str = "replicate", truncate: float = 4.0, clamp: bool = False, levels: bool = False,
) -> torch.Tensor:
    """:func:`gaussian_blur` of image ``b`` with ``sigmas[which[b]]``, for the whole batch at once.

    Args:
        images: ``(B, ..., H, W)``.
        sigmas: the choices of sigma (each a float or (rows, columns)).
        which: int64 ``(B,)`` on the images' device: each image's index into ``sigmas``.
        clamp: clamp the result to [0, 1] (in C, as each row is written: no second pass).
        levels: make the result uint8 levels / 255, as an image stored as uint8 and read back
            (``floor(x * 255)`` clamped to [0, 255], / 255; in C as each row is written).
    """
    if _in_c(images) and images.dim() >= 3:  # a direct sum in C
        return _native_blur(images, sigmas, which, mode, truncate, clamp, levels)
    blurred = None
    if _fused(images) and images.dim() >= 3:  # the same direct sum in a GPU's kernels
        blurred = _fused_blur(images, sigmas, which, mode, truncate)
    if blurred is None:
        h, w = images.shape[-2:]
        rows, cols = _filter_stacks(h, w, sigmas, mode, truncate, images.device, images.dtype)
        batch = (images.shape[0],) + (1,) * (images.dim() - 3)
        rows = rows.index_select(0, which).view(*batch, h, h)
        cols = cols.index_select(0, which).view(*batch, w, w)
        blurred = rows @ images @ cols.transpose(-1, -2)
    if levels:
        return (blurred * 255).floor_().clamp_(0, 255) / 255
    return blurred.clamp_(0.0, 1.0) if clamp else blurred


# Below this width the banded matrix products are as fast as the direct sums in C on the CPU, or
# faster (interleaved runs, 256 images: float32 32 px 1.4x, 48 px 1.8x, 64 and 96 px even, 224 px
# C 2.4x; float64, one sigma for all: 32 px 1.7-2.5x, 64-96 px even, 128 px C 1.6x, 224 px C 2.7x).
NATIVE_BLUR_MIN_WIDTH = 128


def _in_c(images: torch.Tensor) -> bool:
    return (images.shape[-1] >= NATIVE_BLUR_MIN_WIDTH and images.dtype in (torch.float32, torch.float64)
            and images.numel() > 0 and native.available(images.device))


def _fused(images: torch.Tensor) -> bool:
    """Whether a GPU may take the direct sums of :func:`_fused_blur`: at the widths where the CPU
    takes its C kernel's, so that both devices sum in the same order (and agree bit for bit; for
    radii up to ``_FUSED_BLUR_MAX_RADIUS``); below, both multiply by the banded matrices."""
    return (images.shape[-1] >= NATIVE_BLUR_MIN_WIDTH and images.dtype in (torch.float32, torch.float64)
            and images.numel() > 0 and _BLUR_KERNEL.available(images.device))


_BLUR_KERNEL = FusedKernel("gaussian blur")
# Taps each side up to which a GPU takes the direct sums. They cost in proportion to the radius,
# the matrix products do not: on an H100 at 224 px (benchmarks/README.md, stop 19) glass_blur
# (radius 6, a choice per image) went 50,000-53,000 -> 57,000 images/s and its severity mix
# 35,000-49,000 -> 55,000, elastic_transform (7) held 80,000-85,000, but gaussian_blur (12; its
# mix 24) fell 133,000 -> 54,000 and spatter (its float64 field, 8) 95,000-102,000 -> 85,000.
# One blur alone (H200, stop 22, `benchmarks/gpu_blur_cap.py`): direct sums are faster only up to
# radius 3; the cap admits glass_blur's radii for exactness (its uint8 cut needs the CPU's sums).
_FUSED_BLUR_MAX_RADIUS = 7


def _fused_blur(images: torch.Tensor, sigmas: tuple, which: torch.Tensor | None, mode: str, truncate: float
                ) -> torch.Tensor | None:
    """:func:`gaussian_blur_each` as the C kernel computes it (``robench_gaussian_blur``: a vertical,
    then a horizontal pass, each the centre term, then the pairs ``t[j] * (before + after)`` added
    in order of j, in the images' dtype), in two Triton kernels; None if they fail or the kernel
    is wider than ``_FUSED_BLUR_MAX_RADIUS`` taps each side."""
    images = images.contiguous()
    h, w = images.shape[-2:]
    taps, radius, rows, cols = _device_blur_tables(h, w, sigmas, mode, truncate, images.dtype, images.device)
    reach = taps.shape[-1] - 1
    if reach > _FUSED_BLUR_MAX_RADIUS:  # the matrices serve (faster for wide kernels)
        return None
    planes = images[0].numel() // (h * w)
    each = which is not None
    which = which if each else radius  # (not read without choices)
    vertical, out = torch.empty_like(images), torch.empty_like(images)
    exact = {"enable_fp_fusion": False}  # a product, then a sum, each rounded: as the C kernel (no contraction)
    total = images.numel()
    if not _BLUR_KERNEL.launch(_blur_pass_kernel, total, 512, images, vertical, taps, radius, which, rows, total,
                               planes, h, w, REACH=reach, AXIS=0, EACH=each, **exact):
        return None
    if not _BLUR_KERNEL.launch(_blur_pass_kernel, total, 512, vertical, out, taps, radius, which, cols, total,
                               planes, h, w, REACH=reach, AXIS=1, EACH=each, **exact):
        return None
    return out


@functools.lru_cache(maxsize=64)
def _device_blur_tables(h: int, w: int, sigmas: tuple, mode: str, truncate: float, dtype: torch.dtype,
                        device: torch.device) -> tuple[torch.Tensor, ...]:
    """:func:`_half_kernels`'s taps and radii and the padded rows' and columns' sources, on ``device``
    (made once: a copy from host memory would make the host wait at every call)."""
    taps, radius = _half_kernels(sigmas, truncate, dtype)
    reach = taps.shape[-1] - 1
    return (taps.to(device), radius.to(device), _border_index(h, reach, reach, mode, device),
            _border_index(w, reach, reach, mode, device))


if triton is not None:

    @triton.jit(do_not_specialize=["total", "planes", "h", "w"])
    def _blur_pass_kernel(x_ptr, out_ptr, taps_ptr, radius_ptr, which_ptr, source_ptr, total, planes, h, w,
                          REACH: tl.constexpr, AXIS: tl.constexpr, EACH: tl.constexpr, BLOCK: tl.constexpr):
        """One pass of the separable blur, per output value: along columns (``AXIS`` 0, rows from
        ``source``) or rows (1, columns from ``source``), with the image's choice of taps."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        plane = lane // (h * w)
        y = ((lane // w) % h).to(tl.int32)
        x = (lane % w).to(tl.int32)
        choice = tl.load(which_ptr + plane // planes, mask=mask, other=0) if EACH else tl.zeros_like(y)
        taps = taps_ptr + (2 * choice + AXIS) * (REACH + 1)
        radius = tl.load(radius_ptr + 2 * choice + AXIS, mask=mask, other=0)
        base = x_ptr + plane * (h * w)
        if AXIS == 0:  # this column, at the source row of each position
            line, position, stride = base + x, y, w
        else:  # this row, at the source column of each position
            line, position, stride = base + y * w, x, 1
        centre = tl.load(line + tl.load(source_ptr + position + REACH) * stride, mask=mask, other=0.0)
        sums = tl.load(taps, mask=mask, other=0.0) * centre
        for j in tl.static_range(1, REACH + 1):
            before = tl.load(line + tl.load(source_ptr + position + REACH - j) * stride, mask=mask, other=0.0)
            after = tl.load(line + tl.load(source_ptr + position + REACH + j) * stride, mask=mask, other=0.0)
            term = sums + tl.load(taps + j, mask=mask, other=0.0) * (before + after)
            sums = tl.where(j <= radius, term, sums)
        tl.store(out_ptr + lane, sums, mask=mask)


def _native_blur(images: torch.Tensor, sigmas: tuple, which: torch.Tensor | None, mode: str, truncate: float,
                 clamp: bool = False, levels: bool = False) -> torch.Tensor:
    """:func:`gaussian_blur_each` through :func:`robench.cpu_kernels.gaussian_blur` (float32 and float64
    CPU images)."""
    taps, radius = _half_kernels(sigmas, truncate, images.dtype)
    reach = taps.shape[-1] - 1
    h, w = images.shape[-2:]
    return cpu_kernels.gaussian_blur(images, taps, radius, which, _border_index(h, reach, reach, mode, "cpu"),
                                     _border_index(w, reach, reach, mode, "cpu"), clamp, levels)


@functools.lru_cache(maxsize=64)
def _half_kernels(sigmas: tuple, truncate: float, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """Each sigma's vertical and horizontal half-kernels, ``(S, 2, R + 1)`` of ``dtype`` from the
    centre tap out, zero-padded to the longest, and their radii, int64 ``(S, 2)``."""
    pairs = [sigma if isinstance(sigma, tuple) else (sigma, sigma) for sigma in sigmas]
    halves = [[taps[len(taps) // 2 :] for taps in (_gaussian_taps(s, truncate) for s in pair)] for pair in pairs]
    reach = max(len(half) for pair in halves for half in pair) - 1
    taps = torch.zeros(len(pairs), 2, reach + 1, dtype=torch.float64)
    for i, pair in enumerate(halves):
        for axis, half in enumerate(pair):
            taps[i, axis, : len(half)] = torch.tensor(half, dtype=torch.float64)
    radius = torch.tensor([[len(half) - 1 for half in pair] for pair in halves], dtype=torch.int64)
    return taps.to(dtype), radius


@functools.lru_cache(maxsize=64)
def _filter_stacks(h: int, w: int, sigmas: tuple, mode: str, truncate: float, device: torch.device,
                   dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The row and column filter matrices of each sigma, stacked: ``(S, H, H)`` and ``(S, W, W)``."""
    pairs = [sigma if isinstance(sigma, tuple) else (sigma, sigma) for sigma in sigmas]
    rows = torch.stack([filter_matrix(h, _gaussian_taps(sy, truncate), mode, device, dtype) for sy, _ in pairs])
    cols = torch.stack([filter_matrix(w, _gaussian_taps(sx, truncate), mode, device, dtype) for _, sx in pairs])
    return rows, cols


@functools.lru_cache(maxsize=256)
def _gaussian_taps(sigma: float, truncate: float) -> tuple[float, ...]:
    return tuple(gaussian_kernel1d(sigma, truncate, dtype=torch.float64).tolist())


@functools.lru_cache(maxsize=256)
def filter_matrix(size: int, taps: tuple[float, ...], mode: str, device: torch.device,
                  dtype: torch.dtype) -> torch.Tensor:
    """The ``(size, size)`` matrix of a centred 1-D correlation with ``taps`` and a border mode
    (see :func:`pad`): ``out = matrix @ x`` along an axis."""
    radius = len(taps) // 2
    source = _border_index(size, radius, radius, mode, "cpu").unfold(0, len(taps), 1)  # (size, K)
    matrix = torch.zeros(size, size, dtype=torch.float64)
    rows = torch.arange(size)[:, None].expand_as(source)
    weights = torch.tensor(taps, dtype=torch.float64).expand_as(source)
    matrix.index_put_((rows, source), weights, accumulate=True)
    return matrix.to(device=device, dtype=dtype)


def pad(x: torch.Tensor, widths: tuple[int, int, int, int], mode: str) -> torch.Tensor:
    """Pad the last two axes by (left, right, top, bottom) with scipy-named border modes.

    ``replicate`` (scipy ``nearest``), ``reflect101`` (scipy ``mirror``, OpenCV's default
    ``BORDER_REFLECT_101``), ``symmetric`` (scipy ``reflect``, OpenCV ``BORDER_REFLECT``) or
    ``constant`` (zeros). Widths may exceed the image size.
    """
    h, w = x.shape[-2:]
    left, right, top, bottom = widths
    if mode == "constant":
        return F.pad(x, widths)
    if mode == "replicate" and x.dim() == 4:
        return F.pad(x, widths, mode="replicate")
    if mode == "reflect101" and x.dim() == 4 and max(left, right) < w and max(top, bottom) < h:
        return F.pad(x, widths, mode="reflect")
    rows = _border_index(h, top, bottom, mode, x.device)
    cols = _border_index(w, left, right, mode, x.device)
    return x[..., rows[:, None], cols[None, :]]


def _border_index(size: int, before: int, after: int, mode: str, device) -> torch.Tensor:
    """Source index of each padded position, for a border mode of :func:`pad`."""
    idx = torch.arange(-before, size + after, device=device)
    if mode == "replicate":
        return idx.clamp(0, size - 1)
    if size == 1:
        return torch.zeros_like(idx)
    if mode == "reflect101":
        period = 2 * (size - 1)
        idx = torch.remainder(idx, period)
        return torch.where(idx >= size, period - idx, idx)
    if mode == "symmetric":
        period = 2 * size
        idx = torch.remainder(idx, period)
        return torch.where(idx >= size, period - 1 - idx, idx)
    raise ValueError(f"unknown border mode {mode!r}")


def opencv_gaussian_kernel1d(ksize: int, sigma: float, dtype=torch.float64) -> torch.Tensor:
    """``cv2.getGaussianKernel(ksize, sigma)`` for sigma > 0: exp(-(i - (ksize-1)/2)^2 / 2s^2),
    normalised."""
    offsets = torch.arange(ksize, dtype=torch.float64) - (ksize - 1) / 2
    kernel = torch.exp(-(offsets**2) / (2 * sigma**2))
    return (kernel / kernel.sum()).to(dtype)


def disk_kernel(radius: float, alias_blur: float) -> torch.Tensor:
    """ImageNet-C's defocus kernel: a normalised disk of ``radius`` on a grid of half-width
    max(8, radius), smoothed by a 3x3 (5x5 for radius > 8) Gaussian of ``alias_blur`` with
    OpenCV's reflect-101 border, as ``cv2.GaussianBlur`` in the reference. float64 ``(K, K)``."""
    disk, g = _disk_and_gaussian(radius, alias_blur)
    r = g.numel() // 2
    padded = pad((disk / disk.sum())[None, None], (r, r, r, r), "reflect101")
    smooth = F.conv2d(padded, g.view(1, 1, 1, -1))
    smooth = F.conv2d(smooth, g.view(1, 1, -1, 1))
    return smooth[0, 0]


def _disk_and_gaussian(radius: float, alias_blur: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`disk_kernel`'s parts: the 0/1 disk on its grid and the 1-D Gaussian (float64)."""
    half = 8 if radius <= 8 else int(radius)
    ksize = 3 if radius <= 8 else 5
    axis = torch.arange(-half, half + 1, dtype=torch.float64)
    y, x = torch.meshgrid(axis, axis, indexing="ij")
    return ((x**2 + y**2) <= radius**2).to(torch.float64), opencv_gaussian_kernel1d(ksize, alias_blur)


class DiskSums(NamedTuple):
    """:func:`disk_kernel` factored for :func:`robench.cpu_kernels.defocus`: the kernel equals the
    Gaussian ``gauss`` (separable) convolved with a flat disk whose row ``dy = j - reach`` spans
    columns ``-half[j] .. half[j]``, times ``scale``, plus sparse taps ``weights`` at ``(dy, dx)``
    (where the reference cuts the smoothing off at its grid's edge); ``pad`` covers them all."""

    gauss: torch.Tensor
    half: torch.Tensor
    scale: float
    weights: torch.Tensor
    dy: torch.Tensor
    dx: torch.Tensor
    pad: int


@functools.lru_cache(maxsize=64)
def disk_sums(radius: float, alias_blur: float) -> DiskSums:
    """:class:`DiskSums` of the defocus kernel of ``radius`` and ``alias_blur``."""
    disk, g = _disk_and_gaussian(radius, alias_blur)
    rows = torch.nonzero(disk.sum(1)).flatten()
    grid, reach = disk.shape[0] // 2, int(rows[-1]) - disk.shape[0] // 2
    half = ((disk.sum(1)[grid - reach : grid + reach + 1] - 1) / 2).to(torch.int64)
    # the product in full (the disk, normalised, convolved with the separable Gaussian) beside the
    # reference's kernel: their difference is zero up to float64 rounding but where the disk
    # reaches the grid's edge
    r = g.numel() // 2
    product = F.conv2d(F.pad(disk / disk.sum(), (2 * r,) * 4)[None, None], (g[:, None] * g[None, :])[None, None])
    difference = F.pad(disk_kernel(radius, alias_blur), (r,) * 4) - product[0, 0]
    where = torch.nonzero(difference.abs() > 1e-12)
    offsets = where - (grid + r)
    taps = difference[where[:, 0], where[:, 1]].contiguous()
    reach_all = max(reach + r, int(offsets.abs().max()) if len(offsets) else 0)
    return DiskSums(g.float().contiguous(), half.contiguous(), float(1 / disk.sum()), taps.float(),
                    offsets[:, 0].contiguous(), offsets[:, 1].contiguous(), reach_all)


def disk_blur_in_c(images: torch.Tensor, radius: float, alias_blur: float) -> torch.Tensor:
    """:func:`filter2d` of float32 CPU ``images`` with :func:`disk_kernel`, clamped to [0, 1], by
    :func:`robench.cpu_kernels.defocus` (float32 sums of the disk's rows: within 2.5e-7 of a float64
    filter, where :func:`filter2d` in float32 is up to 6e-7 away)."""
    sums = disk_sums(radius, alias_blur)
    h, w = images.shape[-2:]
    return cpu_kernels.defocus(images, sums, _border_index(h, sums.pad, sums.pad, "reflect101", "cpu"),
                               _border_index(w, sums.pad, sums.pad, "reflect101", "cpu"))


def filter2d(images: torch.Tensor, kernel: torch.Tensor, mode: str = "reflect101") -> torch.Tensor:
    """Correlate every channel with a 2-D ``kernel`` (odd sizes, anchored at the centre), as
    ``cv2.filter2D`` with the given border mode; or image ``b`` with ``kernel[b]`` for a
    ``(B, K, K)`` stack of kernels.

    All-zero border rows and columns of a host kernel are dropped first (they change nothing);
    a kernel already on the images' device is used as it is (trim it with
    :func:`trim_zero_border` before moving it: trimming there would make the host wait).
    Kernels up to 7x7 (up to 15x15 on the CPU, where a direct depthwise convolution beats the
    FFT) go through :func:`correlate`, larger ones through an FFT.
    """
    if kernel.device.type == "cpu" and kernel.dim() == 2:
        kernel = trim_zero_border(kernel)
    kh, kw = kernel.shape[-2:]
    b, c, h, w = images.shape
    x = pad(images.reshape(b * c, 1, h, w), (kw // 2, kw // 2, kh // 2, kh // 2), mode)
    weight = kernel.to(device=images.device, dtype=images.dtype)
    if weight.dim() == 3:  # one kernel per image: one per plane
        weight = weight.repeat_interleave(c, 0)[:, None]  # (B * C, 1, K, K), the planes' order
    if max(kh, kw) <= (15 if images.device.type == "cpu" else 7):
        out = correlate(x, weight)
    else:
        size = x.shape[-2:]
        spectrum = torch.fft.rfft2(weight.flip(-2, -1), s=size)
        out = torch.fft.irfft2(torch.fft.rfft2(x) * spectrum, s=size)[..., kh - 1 :, kw - 1 :]
    return out.reshape(b, c, h, w)


def correlate(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Valid 2-D correlation of every ``(H, W)`` plane of ``x`` (``(..., H, W)``, padded
    beforehand) with one ``(kh, kw)`` kernel, as ``F.conv2d`` with one channel; or of plane
    ``i`` (in ``x``'s order) with ``kernel[i]``, for ``(N, 1, kh, kw)`` kernels.

    The planes are laid out as the channels of one depthwise convolution: the same sums, but
    on the CPU 10-25x faster than a single-channel convolution over a batch of planes (oneDNN
    handles that layout poorly).
    """
    *lead, h, w = x.shape
    kh, kw = kernel.shape[-2:]
    planes = x.reshape(1, -1, h, w)
    weight = kernel.reshape(-1, 1, kh, kw).expand(planes.shape[1], 1, kh, kw)
    return F.conv2d(planes, weight, groups=planes.shape[1]).reshape(*lead, h - kh + 1, w - kw + 1)


def trim_zero_border(kernel: torch.Tensor) -> torch.Tensor:
    """``kernel`` without its all-zero border rows and columns, trimmed symmetrically."""
    rows = torch.nonzero(kernel.abs().sum(1) > 0).flatten()
    cols = torch.nonzero(kernel.abs().sum(0) > 0).flatten()
    if rows.numel() == 0:
        return kernel[:1, :1]
    kh, kw = kernel.shape
    top, left = min(int(rows[0]), kh - 1 - int(rows[-1])), min(int(cols[0]), kw - 1 - int(cols[-1]))
    return kernel[top : kh - top, left : kw - left]  # symmetric trim keeps the anchor centred
