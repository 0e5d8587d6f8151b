"""Digital corruptions (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR), with the parameters of ImageNet-C and CIFAR-10-C.

Images of 96 px and up use the ImageNet-C parameters, smaller ones the CIFAR-10-C parameters.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

from robench import cpu_kernels, native
from robench.api import SEVERITY_TABLES, BatchRNG, Distortion, hookimpl
from robench_plugins.distortions import _device
from robench_plugins.distortions._color import hsv_to_rgb, rgb_to_hsv
from robench_plugins.distortions._device import WholeBatchInC, constant
from robench_plugins.distortions._filters import gaussian_blur_each
from robench_plugins.distortions._jpeg import jpeg_roundtrip
from robench_plugins.distortions._parametric import MixedPass, OneParameter

# contrast factor around the per-channel mean
_CONTRAST = {"imagenet-c": (0.4, 0.3, 0.2, 0.1, 0.05), "cifar-10-c": (0.75, 0.5, 0.4, 0.3, 0.15)}
# (saturation factor, saturation offset)
_SATURATE = {
    "imagenet-c": ((0.3, 0), (0.1, 0), (2, 0), (5, 0.1), (20, 0.2)),
    "cifar-10-c": ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)),
}
# JPEG quality
_JPEG = {"imagenet-c": (25, 18, 15, 10, 7), "cifar-10-c": (80, 65, 58, 50, 40)}
# size factor of the box downscale
_PIXELATE = {"imagenet-c": (0.6, 0.5, 0.4, 0.3, 0.25), "cifar-10-c": (0.95, 0.9, 0.85, 0.75, 0.65)}
# ImageNet-C: alpha of the displacement (sigma 0.01 * size, max shift 0.005 * size);
# CIFAR-10-C: (alpha, sigma, affine jitter) as fractions of the image size
_ELASTIC_IMAGENET = tuple(250 * f for f in (0.05, 0.065, 0.085, 0.1, 0.12))
_ELASTIC_CIFAR = ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03))


class Contrast(WholeBatchInC, OneParameter):
    """Contrast reduction: (x - per-channel mean) * c + mean."""

    name = "contrast"
    group = "digital"
    tables = SEVERITY_TABLES

    def parameters(self, height: int, width: int) -> tuple[float, ...]:
        return _CONTRAST[self.table(height, width)]

    def distort(self, images: torch.Tensor, factor: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        mean = images.mean((2, 3), keepdim=True)
        if native.takes(images):  # the blend in one loop
            return cpu_kernels.contrast(images, mean, factor)
        return ((images - mean) * factor + mean).clamp_(0.0, 1.0)


class Saturate(WholeBatchInC, Distortion):
    """Saturation change: HSV saturation * c0 + c1, clipped.

    The ImageNet-C validation digital corruption; severities 1-2 desaturate and 3-5 oversaturate,
    as in the reference tables.
    """

    name = "saturate"
    group = "digital"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        factor, offset = _SATURATE[self.table(*images.shape[-2:])][severity - 1]
        return self._saturate(images, factor, offset)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        factors, offsets = zip(*_SATURATE[self.table(*images.shape[-2:])])
        return self._saturate(images, self.per_sample(factors, severities, images),
                              self.per_sample(offsets, severities, images))

    @staticmethod
    def _saturate(images: torch.Tensor, factor: float | torch.Tensor, offset: float | torch.Tensor) -> torch.Tensor:
        if native.takes(images):  # the same conversions, pixel by pixel in one loop
            return cpu_kernels.hsv(cpu_kernels.SATURATE, images, factor, offset)
        hsv = rgb_to_hsv(images)
        hsv[:, 1:2] = (hsv[:, 1:2] * factor + offset).clamp_(0.0, 1.0)
        return hsv_to_rgb(hsv).clamp_(0.0, 1.0)


class JpegCompression(WholeBatchInC, Distortion):
    """JPEG compression at the table's quality, the codec's lossy steps in torch.

    Colour transform, 4:2:0 chroma subsampling, 8x8 DCT, quantisation with the standard tables
    scaled by quality, and the inverse path, reproducing Pillow/libjpeg's output.
    """

    name = "jpeg_compression"
    group = "digital"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        quality = _JPEG[self.table(*images.shape[-2:])][severity - 1]
        return jpeg_roundtrip(images, quality)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        which = self.severity_index(severities, images.device)
        return jpeg_roundtrip(images, _JPEG[self.table(*images.shape[-2:])], which)


class Pixelate(WholeBatchInC, Distortion):
    """Pixelation: box downscale by c, upscale back.

    Pillow's BOX coefficients in its fixed point, rounding to uint8 after each pass, as the
    references' ``Image.resize``: the upscale is nearest-neighbour in ``imagecorruptions``
    (ImageNet-C) and BOX in the CIFAR-10-C script.
    """

    name = "pixelate"
    group = "digital"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        factor = _PIXELATE[self.table(*images.shape[-2:])][severity - 1]
        h, w = images.shape[-2:]
        small_h, small_w = max(1, int(h * factor)), max(1, int(w * factor))
        if native.takes(images):  # the same passes, one plane at a time in one loop
            return cpu_kernels.pixelate(images, (small_h, small_w), *_pixelate_plan(h, w, small_h, small_w,
                                                                                     self.table(h, w) == "cifar-10-c"))
        small = _box_resize((images * 255).round_(), small_h, small_w).div_(255).to(images.dtype)
        # Both upscales copy pixels (exactly), so they may come after the division by 255.
        if self.table(h, w) == "cifar-10-c":  # the CIFAR script upscales with BOX as well
            return _box_upscale(small, h, w)
        # Pillow's nearest upscale samples floor((o + 0.5) * in / out): torch's "nearest-exact"
        return F.interpolate(small, size=(h, w), mode="nearest-exact")

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        if not _device.launch_bound(images.device):  # padded products: more work, fewer launches
            return self.apply_grouped(images, severities, rng)
        # Each image's own resize matrices, zero-padded to the largest small size: the padded
        # outputs are 0 and the upscale reads none of them, so every sum is the one alone (exact).
        h, w = images.shape[-2:]
        table = self.table(h, w)
        stack = _pixelate_stack(h, w, _PIXELATE[table], table == "cifar-10-c", images.device)
        which = self.severity_index(severities, images.device)
        down_w, weight_w, down_h, weight_h, up_h, up_w = (part.index_select(0, which)[:, None] for part in stack)
        x = _fixed_point((images * 255).round_() @ down_w.transpose(-1, -2), weight_w[..., None, :])
        small = _fixed_point(down_h @ x, weight_h[..., None]).div_(255).to(images.dtype)
        return up_h @ small @ up_w.transpose(-1, -2)


@functools.lru_cache(maxsize=64)
def _pixelate_plan(h: int, w: int, small_h: int, small_w: int, box_upscale: bool) -> tuple[tuple, tuple, tuple]:
    """:func:`robench.cpu_kernels.pixelate`'s tables (CPU, int32): per small column and per small row
    its first and end tap and fixed-point weight (None: single taps), and the small row and column
    that each output row and column copies (BOX, or torch's ``nearest-exact`` as Pixelate uses)."""

    def down(size: int, out: int) -> tuple:
        taps, weight = _box_taps(size, out, torch.device("cpu"))
        index = torch.arange(size, dtype=torch.int32)
        hit = taps > 0
        lo = torch.where(hit, index, size).amin(1).to(torch.int32)
        hi = torch.where(hit, index + 1, 0).amax(1).to(torch.int32)
        return lo, hi, weight

    def up(small: int, size: int) -> torch.Tensor:
        if box_upscale:
            return _box_taps(small, size, torch.device("cpu"))[0].argmax(1).to(torch.int32)
        ramp = torch.arange(small, dtype=torch.float32).view(1, 1, small)
        return F.interpolate(ramp, size=size, mode="nearest-exact").view(-1).to(torch.int32)

    return down(w, small_w), down(h, small_h), (up(small_h, h), up(small_w, w))


@functools.lru_cache(maxsize=16)
def _pixelate_stack(h: int, w: int, factors: tuple[float, ...], box_upscale: bool,
                    device: torch.device) -> tuple[torch.Tensor, ...]:
    """Per factor, stacked and zero-padded to the largest small size: the BOX downscale taps
    along the columns ``(S, Mw, W)`` and their fixed-point weights ``(S, Mw)``, the same along
    the rows, and the 0/1 upscale matrices ``(S, H, Mh)``, ``(S, W, Mw)`` (BOX, or Pillow's
    nearest neighbour as torch's ``nearest-exact``)."""
    sizes = [(max(1, int(h * f)), max(1, int(w * f))) for f in factors]
    most_h, most_w = max(sh for sh, _ in sizes), max(sw for _, sw in sizes)

    def down(size: int, out: int, most: int) -> tuple[torch.Tensor, torch.Tensor]:
        taps, weight = _box_taps(size, out, torch.device("cpu"))
        if weight is None:  # a factor near 1 may keep the size: one tap each, weight 2^22
            weight = torch.full((out,), _FIXED_ONE, dtype=torch.int32)
        return F.pad(taps, (0, 0, 0, most - out)), F.pad(weight, (0, most - out))

    def up(small: int, size: int, most: int) -> torch.Tensor:
        if box_upscale:
            taps, _ = _box_taps(small, size, torch.device("cpu"))
        else:  # the source index of each output pixel, by torch's own rule
            ramp = torch.arange(small, dtype=torch.float32).view(1, 1, small)
            source = F.interpolate(ramp, size=size, mode="nearest-exact").view(-1).long()
            taps = F.one_hot(source, small).float()
        return F.pad(taps, (0, most - small))

    parts = [(*down(w, sw, most_w), *down(h, sh, most_h), up(sh, h, most_h), up(sw, w, most_w)) for sh, sw in sizes]
    return tuple(torch.stack(column).to(device) for column in zip(*parts))


class ElasticTransform(MixedPass):
    """Elastic deformation by a smoothed random displacement field.

    Linear interpolation with half-sample-symmetric borders, as
    ``scipy.ndimage.map_coordinates(order=1, mode='reflect')``.

    The two references differ and robench follows each for its table: ImageNet-C (as
    ``imagecorruptions``) displaces only; CIFAR-10-C (Hendrycks' CIFAR script) first applies a
    random affine warp (three points jittered by up to ``affine * size``, reflect-101 borders)
    and then a displacement field of ``alpha * size`` smoothed with ``sigma * size``.
    """

    name = "elastic_transform"
    group = "digital"
    tables = SEVERITY_TABLES

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        h, w = images.shape[-2:]
        if self.table(h, w) == "imagenet-c":
            alphas = self.per_sample(_ELASTIC_IMAGENET, severities, images)
            spread, sigmas = 0.005 * h, ((0.01 * h, 0.01 * w),) * 5
        else:
            float64 = torch.empty(0, dtype=torch.float64, device=images.device)  # the affine is float64
            jitter = self.per_sample([affine * h for _, _, affine in _ELASTIC_CIFAR], severities, float64)
            images = _random_affine(images, jitter.view(-1, 1, 1), rng)
            alphas = self.per_sample([alpha_f * h for alpha_f, _, _ in _ELASTIC_CIFAR], severities, images)
            # alpha 0 leaves the image as it is: any sigma serves (1 px: the table's has none)
            spread, sigmas = 1.0, tuple((s * h, s * w) if s else (1.0, 1.0) for _, s, _ in _ELASTIC_CIFAR)
        field = rng.uniform(2, h, w).to(images.dtype) * (2 * spread) - spread
        which = self.severity_index(severities, images.device)
        field = gaussian_blur_each(field, sigmas, which, mode="symmetric", truncate=3.0)
        if native.takes(images):  # the scaled field and the grid in one pass in C: the same values
            displaced = _sample_at(images, cpu_kernels.elastic_grid(field, alphas), "symmetric")
            if not bool((alphas == 0).any()):  # no image kept as it is (a check that waits on no device)
                return displaced.clamp_(0.0, 1.0)
        else:
            field = field * alphas
            displaced = _sample(images, field[:, 1], field[:, 0], "symmetric")
        return torch.where(alphas == 0, images, displaced).clamp_(0.0, 1.0)


@functools.lru_cache(maxsize=64)
def _box_taps(size: int, out: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Pillow's BOX resampling (``precompute_coeffs``) from ``size`` to ``out`` pixels: a 0/1
    ``(out, size)`` float32 matrix of the taps of each output pixel, and each output pixel's
    int32 fixed-point weight (the box weights of one output pixel are equal: round(2^22 / taps)),
    or None where every output pixel has a single tap (an upscale): the pass is then exact."""
    scale = size / out
    support = 0.5 * max(scale, 1.0)
    taps = torch.zeros(out, size)
    for o in range(out):
        centre = (o + 0.5) * scale
        lo, hi = max(int(centre - support + 0.5), 0), min(int(centre + support + 0.5), size)
        offsets = (torch.arange(lo, hi, dtype=torch.float64) - centre + 0.5) / max(scale, 1.0)
        taps[o, lo:hi] = ((offsets > -0.5) & (offsets <= 0.5)).float()
    if bool((taps.sum(1) == 1).all()):
        return taps.to(device), None
    weight = torch.floor(0.5 + _FIXED_ONE / taps.sum(1).double()).to(torch.int32)
    return taps.to(device), weight.to(device)


_FIXED_ONE = 1 << 22


def _box_resize(levels: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pillow's two-pass BOX resize of uint8 levels: horizontal first, each pass in its 8-bit
    fixed point (rounded half up, clipped), uint8 stored between the passes, as Pillow does."""
    h, w = levels.shape[-2:]
    taps, weight = _box_taps(w, width, levels.device)
    x = _fixed_point(levels @ taps.T, weight)
    taps, weight = _box_taps(h, height, levels.device)
    return _fixed_point(taps @ x, None if weight is None else weight[:, None])


def _box_upscale(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pillow's BOX resize to a size at least ``x``'s: each output pixel copies one input pixel,
    so the result is exact for any values (levels or not)."""
    rows, row_weight = _box_taps(x.shape[-2], height, x.device)
    cols, col_weight = _box_taps(x.shape[-1], width, x.device)
    if row_weight is not None or col_weight is not None:
        raise ValueError(f"not an upscale: {tuple(x.shape[-2:])} -> {(height, width)}")
    return rows @ x @ cols.T


def _fixed_point(tap_sums: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """(sum * weight + 2^21) >> 22, clipped to 0..255: exact, as the tap sums are integers
    below 2^24 (exact in float32) and the product stays below 2^31 (at most 255 * 2^22 + 2^21
    plus a rounding margin). Single taps (``weight`` None) have weight 2^22: the sums as they are."""
    if weight is None:
        return tap_sums
    total = tap_sums.round().to(torch.int32).mul_(weight).add_(_FIXED_ONE >> 1)
    return total.bitwise_right_shift_(22).clamp_(0, 255).to(torch.float32)


def _sample(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, border: str) -> torch.Tensor:
    """Bilinear sampling at (y + dy, x + dx) per pixel; ``symmetric`` reflects about the image
    border (scipy ``reflect``), ``reflect101`` about the edge pixels (OpenCV's default)."""
    b, _, h, w = images.shape
    ys = torch.arange(h, device=images.device, dtype=images.dtype).view(1, h, 1) + dy
    xs = torch.arange(w, device=images.device, dtype=images.dtype).view(1, 1, w) + dx
    if border == "symmetric":  # align_corners=False reflects about -0.5 and size - 0.5
        return _sample_at(images, torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1), border)
    return _sample_at(images, torch.stack([2 * xs / max(w - 1, 1) - 1, 2 * ys / max(h - 1, 1) - 1], -1), border)


def _sample_at(images: torch.Tensor, grid: torch.Tensor, border: str) -> torch.Tensor:
    """Bilinear sampling at ``grid`` (:func:`_sample`'s, normalised to [-1, 1]) with its border rule."""
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=border != "symmetric")


def _random_affine(images: torch.Tensor, jitter: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
    """Hendrycks' CIFAR affine step: three points around the centre, each moved by up to
    ``jitter`` pixels (or a float64 ``(B, 1, 1)`` jitter per image), define the affine map
    (``cv2.getAffineTransform`` + ``warpAffine``)."""
    b, _, h, w = images.shape
    device = images.device  # all of it there: a round trip through the host would wait for the device
    centre, third = (h // 2, w // 2), min(h, w) // 3
    src = constant(((centre[0] + third, centre[1] + third), (centre[0] + third, centre[1] - third),
                    (centre[0] - third, centre[1] - third)), device, torch.float64)
    dst = src[None] + (rng.uniform(3, 2).to(torch.float64) * 2 - 1) * jitter  # (B, 3, 2) as (x, y)
    ones = torch.ones(b, 3, 1, dtype=torch.float64, device=device)
    # the inverse map sends output points back to input points: solve [dst 1] @ A = src
    # (solve_ex: no error check, which would read a flag back from the device)
    inverse = torch.linalg.solve_ex(torch.cat([dst, ones], 2), src.expand(b, -1, -1))[0]  # (B, 3, 2)
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float64, device=device),
                            torch.arange(w, dtype=torch.float64, device=device), indexing="ij")
    points = torch.stack([xs, ys, torch.ones_like(xs)], -1).view(1, h * w, 3)
    source = (points @ inverse).view(b, h, w, 2).to(images.dtype)
    grid_x, grid_y = source[..., 0] - torch.arange(w, device=device), source[..., 1] - \
        torch.arange(h, device=device).view(h, 1)
    return _sample(images, grid_y, grid_x, "reflect101")


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [Contrast, ElasticTransform, Pixelate, JpegCompression, Saturate]

