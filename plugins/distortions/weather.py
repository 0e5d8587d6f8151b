"""Weather corruptions (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR), with the parameters of ImageNet-C and CIFAR-10-C.

Images of 96 px and up use the ImageNet-C parameters, smaller ones the CIFAR-10-C parameters.
``frost`` departs from the reference on purpose (a procedural texture instead of photographs);
see its docstring.
"""

from __future__ import annotations

import torch

from robench import cpu_kernels, native
from robench.api import SEVERITY_TABLES, BatchRNG, Distortion, hookimpl
from robench.fused import FusedKernel, tl, triton
from robench_plugins.distortions._color import grayscale, hsv_to_rgb, rgb_to_hsv
from robench_plugins.distortions._device import WholeBatchInC, constant
from robench_plugins.distortions._fractal import next_power_of_two, plasma_fractals
from robench_plugins.distortions._parametric import MixedPass, OneParameter
from robench_plugins.distortions._spatter import SPATTER_TABLES, spatter_each
from robench_plugins.distortions.blur import clipped_zoom, motion_blur, motion_weights

# (strength, wibble decay) of the plasma fog
_FOG = {
    "imagenet-c": ((1.5, 2), (2.0, 2), (2.5, 1.7), (2.5, 1.5), (3.0, 1.4)),
    "cifar-10-c": ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)),
}
# (mean, std, zoom, threshold, blur radius, blur sigma, blend)
_SNOW = {
    "imagenet-c": ((0.1, 0.3, 3, 0.5, 10, 4, 0.8), (0.2, 0.3, 2, 0.5, 12, 4, 0.7),
                   (0.55, 0.3, 4, 0.9, 12, 8, 0.7), (0.55, 0.3, 4.5, 0.85, 12, 8, 0.65),
                   (0.55, 0.3, 2.5, 0.85, 12, 12, 0.55)),
    "cifar-10-c": ((0.1, 0.2, 1, 0.6, 8, 3, 0.95), (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                   (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9), (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                   (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8)),
}
# (image weight, frost weight)
_FROST = {
    "imagenet-c": ((1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75)),
    "cifar-10-c": ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)),
}
# added to the HSV value
_BRIGHTNESS = {"imagenet-c": (0.1, 0.2, 0.3, 0.4, 0.5), "cifar-10-c": (0.05, 0.1, 0.15, 0.2, 0.3)}


class Fog(WholeBatchInC, Distortion):
    """Fog: a plasma fractal added to the image, rescaled by max / (max + strength).

    The fractal is the reference's diamond-square map, of the next power of two of the image side.
    """

    name = "fog"
    group = "weather"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        strength, decay = _FOG[self.table(*images.shape[-2:])][severity - 1]
        return self._fog(images, strength, decay, rng)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        strengths, decays = zip(*_FOG[self.table(*images.shape[-2:])])
        decay = torch.tensor(decays, dtype=torch.float64)[severities - 1]
        return self._fog(images, self.per_sample(strengths, severities, images), decay, rng)

    @staticmethod
    def _fog(images: torch.Tensor, strength: float | torch.Tensor, decay: float | torch.Tensor,
             rng: BatchRNG) -> torch.Tensor:
        h, w = images.shape[-2:]
        # a map of at least 2 x 2: one value alone has no range to normalise (0 / 0)
        plasma = plasma_fractals(rng, next_power_of_two(max(h, w, 2)), decay, corner=(h, w))
        if native.takes(images):  # the same blend in one loop
            return cpu_kernels.fog(images, plasma, strength)
        peak = images.amax((1, 2, 3), keepdim=True)
        fogged = images + strength * plasma.to(images.dtype)
        return (fogged * peak / (peak + strength)).clamp_(0.0, 1.0)


class Snow(WholeBatchInC, MixedPass):
    """Snow: a motion-blurred snow layer and its rotation over a brightened image.

    The layer is thresholded, zoomed Gaussian noise, blurred at an angle in [-135, -45] degrees.
    Both tables use the motion blur of ``imagecorruptions``, which reproduces the kernel and
    offsets of ImageMagick's ``MotionBlurImage`` that Hendrycks' CIFAR script called.
    """

    name = "snow"
    group = "weather"
    tables = SEVERITY_TABLES

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        h, w = images.shape[-2:]
        table = self.table(h, w)
        params = _SNOW[table]

        def each(values: list[float]) -> torch.Tensor:
            return self.per_sample(values, severities, images)

        mean, std, threshold = (each([p[i] for p in params]) for i in (0, 1, 3))
        layer = (mean + std * rng.normal(1, h, w)).to(images.dtype)
        zooms = each([p[2] for p in params])
        zoomed = layer
        for zoom in sorted({params[s - 1][2] for s in torch.unique(severities.cpu()).tolist()}):
            zoomed = torch.where(zooms == zoom, clipped_zoom(layer, zoom, centre_trim=table == "cifar-10-c"), zoomed)
        layer = torch.where(zoomed < threshold, torch.zeros_like(zoomed), zoomed).clamp_(0.0, 1.0)
        if table == "cifar-10-c":  # the CIFAR script hands the layer to ImageMagick as uint8
            layer = (layer * 255).floor_() / 255
        angle = rng.uniform(1)[:, 0] * 90 - 135
        layer = motion_blur(layer, motion_weights(tuple((p[4], p[5]) for p in params), severities, images.device), angle)
        layer = (layer * 255).round_() / 255  # the reference stores the layer as uint8
        image_weight, lift_weight = each([p[6] for p in params]), each([1 - p[6] for p in params])
        if native.takes(images) and images.shape[1] == 3:  # the lift, blend and layers in one loop
            return cpu_kernels.snow(images, layer, image_weight, lift_weight)
        blended = _snow_blend_fused(images, layer, image_weight, lift_weight)
        if blended is not None:  # a GPU's one kernel for the same steps
            return blended
        lifted = torch.maximum(images, grayscale(images) * 1.5 + 0.5)
        base = image_weight * images + lift_weight * lifted
        return (base + layer + layer.flip(-2, -1)).clamp_(0.0, 1.0)


_SNOW_BLEND = FusedKernel("snow blend")


def _snow_blend_fused(images: torch.Tensor, layer: torch.Tensor, image_weight: torch.Tensor,
                      lift_weight: torch.Tensor) -> torch.Tensor | None:
    """:class:`Snow`'s last steps (the lift, the blend with per-sample weights ``(B, 1, 1, 1)``,
    the layer ``(B, 1, H, W)`` added as it is and turned by 180 degrees, clamped) in one kernel
    on a GPU, each operation rounded as torch's separate operators round it; None where the
    kernel is unavailable or fails."""
    if images.dtype != torch.float32 or images.shape[1] != 3 or not _SNOW_BLEND.available(images.device):
        return None
    images, layer = images.contiguous(), layer.contiguous()
    b, _, h, w = images.shape
    weights = [weight.expand(b, 1, 1, 1).reshape(b).float().contiguous() for weight in (image_weight, lift_weight)]
    out = torch.empty_like(images)
    if not _SNOW_BLEND.launch(_snow_blend_kernel, b * h * w, 512, images, layer, *weights, out, b * h * w, h * w,
                              enable_fp_fusion=False):
        return None
    return out


if triton is not None:

    @triton.jit(do_not_specialize=["total", "plane"])
    def _snow_blend_kernel(images_ptr, layer_ptr, keep_ptr, lift_ptr, out_ptr, total, plane, BLOCK: tl.constexpr):
        """One pixel: grey = (0.299 R + 0.587 G) + 0.114 B (torch's sum over channels), the
        lift max(value, 1.5 grey + 0.5), then keep * value + lift * lifted + flake + turned flake."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        image, i = lane // plane, lane % plane
        x = images_ptr + image * 3 * plane + i
        red = tl.load(x, mask=mask, other=0.0)
        green = tl.load(x + plane, mask=mask, other=0.0)
        blue = tl.load(x + 2 * plane, mask=mask, other=0.0)
        grey = (red * 0.299 + green * 0.587) + blue * 0.114
        lifted = grey * 1.5 + 0.5
        flakes = tl.load(layer_ptr + image * plane + i, mask=mask, other=0.0)
        turned = tl.load(layer_ptr + image * plane + plane - 1 - i, mask=mask, other=0.0)
        keep = tl.load(keep_ptr + image, mask=mask, other=0.0)
        lift = tl.load(lift_ptr + image, mask=mask, other=0.0)
        y = out_ptr + image * 3 * plane + i
        tl.store(y, tl.minimum(tl.maximum((keep * red + lift * tl.maximum(red, lifted) + flakes) + turned, 0.0), 1.0),
                 mask=mask)
        tl.store(y + plane, tl.minimum(tl.maximum((keep * green + lift * tl.maximum(green, lifted) + flakes) + turned,
                                                  0.0), 1.0), mask=mask)
        tl.store(y + 2 * plane, tl.minimum(tl.maximum((keep * blue + lift * tl.maximum(blue, lifted) + flakes) + turned,
                                                      0.0), 1.0), mask=mask)


class Frost(WholeBatchInC, Distortion):
    """Frost: c0 * image + c1 * a frost texture (the reference's weights).

    Departs from the reference on purpose: the reference blends random crops of six frost
    photographs shipped with it; robench generates the texture procedurally (a plasma-fractal
    ice field with sharp crystal ridges, tinted blue-white), so it is batched on any device,
    needs no image files, and has the same range of brightness (mean 0.45-0.8) and texture
    contrast (standard deviation about 0.06-0.16) as those photographs' crops.
    """

    name = "frost"
    group = "weather"
    tables = SEVERITY_TABLES

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        image_weight, frost_weight = _FROST[self.table(*images.shape[-2:])][severity - 1]
        return self._frost(images, image_weight, frost_weight, rng)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        image_weights, frost_weights = zip(*_FROST[self.table(*images.shape[-2:])])
        return self._frost(images, self.per_sample(image_weights, severities, images),
                           self.per_sample(frost_weights, severities, images), rng)

    @staticmethod
    def _frost(images: torch.Tensor, image_weight: float | torch.Tensor, frost_weight: float | torch.Tensor,
               rng: BatchRNG) -> torch.Tensor:
        # the texture is the same at every severity
        if native.takes(images) and images.shape[1] == 3:  # texture and blend in one loop
            parts = _frost_parts(rng, *images.shape[-2:])
            return cpu_kernels.frost(images, *parts, _FROST_TINT, image_weight, frost_weight)
        texture = frost_texture(rng, *images.shape[-2:]).to(images.dtype)
        return (image_weight * images + frost_weight * texture).clamp_(0.0, 1.0)


class Brightness(WholeBatchInC, OneParameter):
    """Brightness: the HSV value channel plus c, clipped (scikit-image colour conversions)."""

    name = "brightness"
    group = "weather"
    tables = SEVERITY_TABLES

    def parameters(self, height: int, width: int) -> tuple[float, ...]:
        return _BRIGHTNESS[self.table(height, width)]

    def distort(self, images: torch.Tensor, shift: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        if native.takes(images):  # the same conversions, pixel by pixel in one loop
            return cpu_kernels.hsv(cpu_kernels.BRIGHTNESS, images, shift)
        hsv = rgb_to_hsv(images)
        hsv[:, 2:] = (hsv[:, 2:] + shift).clamp_(0.0, 1.0)
        return hsv_to_rgb(hsv).clamp_(0.0, 1.0)


class Spatter(WholeBatchInC, MixedPass):
    """Spatter: water droplets (severities 1-3) or mud (4-5) on the lens.

    The reference's OpenCV pipeline (Canny edges, chamfer distance transform, histogram
    equalisation, emboss) reproduced in batched torch; see ``_spatter.spatter``. On the CPU its
    draws, blur and water run in C over the whole batch: at the peak a float64 field and the
    result, about 1.7x the batch's size (in chunks: 2.1x, the chunks' results and their
    concatenation; and 15-40% slower at 224 px).
    """

    name = "spatter"
    group = "weather"
    tables = SEVERITY_TABLES

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        return spatter_each(images, SPATTER_TABLES[self.table(*images.shape[-2:])], severities, rng)


def frost_texture(rng: BatchRNG, height: int, width: int) -> torch.Tensor:
    """Procedural frost, ``(B, 3, H, W)`` in [0, 1]: a per-sample brightness and contrast, a
    fractal ice field and thin bright ridges (where a second fractal crosses its median)."""
    maps, mean, spread, brightness, contrast, ridge_weight = _frost_parts(rng, height, width)
    field, ridges = maps.split(1, dim=1)
    ridges = 1 - (2 * ridges - 1).abs()  # 1 on the median line, falling off fast: ^8
    ridges = ridges * ridges
    ridges = ridges * ridges
    ridges = ridges * ridges
    luminance = brightness + contrast * ((field - mean) / spread) + ridge_weight * ridges
    tint = constant(_FROST_TINT, field.device).view(1, 3, 1, 1)
    return (luminance * tint).clamp_(0.0, 1.0)


_FROST_TINT = (0.82, 0.93, 1.0)  # blue-white


def _frost_parts(rng: BatchRNG, height: int, width: int) -> tuple[torch.Tensor, ...]:
    """The random parts of :func:`frost_texture`: the two plasma maps ``(B, 2, H, W)`` (field,
    ridges), the field's mean and spread (sample standard deviation, at least 1e-6), and each
    sample's brightness, contrast and ridge weight, all ``(B, 1, 1, 1)``."""
    size = next_power_of_two(max(height, width, 2))  # 2 x 2 at least: a 1 x 1 map normalises to 0 / 0
    maps = plasma_fractals(rng, size, 1.6, 1.4, corner=(height, width))
    params = rng.uniform(3).view(-1, 3, 1, 1)
    field = maps[:, :1]
    mean = field.mean((2, 3), keepdim=True)
    centred = field - mean
    spread = (centred * centred).sum((2, 3), keepdim=True).div_(max(1, height * width - 1)).sqrt_().clamp_min_(1e-6)
    return (maps, mean, spread, 0.45 + 0.35 * params[:, :1], 0.06 + 0.1 * params[:, 1:2],
            0.25 * params[:, 2:])


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [Snow, Frost, Fog, Brightness, Spatter]
