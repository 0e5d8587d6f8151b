"""The CPU kernels in C give exactly the torch paths' values, and fall back cleanly."""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from robench import cpu_kernels, host_memory, native
from robench.api import CPU_CHUNK_VALUES, CPU_CHUNK_VALUES_KEPT
from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions import _filters, _spatter, blur, digital
from robench_plugins.distortions._filters import gaussian_blur_each
from robench_plugins.distortions._fractal import plasma_fractals
from robench_plugins.distortions._glass import local_copies
from robench_plugins.distortions._jpeg import jpeg_roundtrip

HAS_COMPILER = shutil.which(os.environ.get("CC") or "cc") is not None
needs_compiler = pytest.mark.skipif(not HAS_COMPILER, reason="needs a C compiler")
# whole distortions in C on the CPU
IN_C = ("gaussian_noise", "speckle_noise", "impulse_noise", "shot_noise", "pixelate", "jpeg_compression", "zoom_blur",
        "brightness", "saturate", "contrast", "fog", "frost")
PARTLY_IN_C = ("spatter",)  # its field, blur and water (its mud's blend is torch)
# the reference's direct sums in C where the torch paths multiply matrices or use an FFT: float32 rounding apart
SUMMED_IN_C = ("motion_blur", "gaussian_blur", "defocus_blur")


def draws(rng: BatchRNG) -> list[torch.Tensor]:
    """Every kind of draw: odd sizes, one value, several streams at once, counters past 2^16."""
    return [rng.bits(5, 7), rng.uniform(3, 11), rng.normal(13), rng.normal(4, 4), rng.normal(1),
            rng.uniform_streams(3, 5, 0, 1), rng.integers(0, 10, 9), rng.bits(70_001), rng.normal(3, 33, 31)]


def _both_paths(monkeypatch, make) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``make()`` through the C kernels, then through the torch paths."""
    assert native.available(torch.device("cpu"))
    compiled = make()
    monkeypatch.setenv("ROBENCH_FUSED", "0")
    assert not native.available(torch.device("cpu"))
    return compiled, make()


def _same(compiled: list[torch.Tensor], plain: list[torch.Tensor]) -> None:
    assert len(compiled) == len(plain)
    for a, b in zip(compiled, plain):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)


@needs_compiler
@pytest.mark.parametrize("batch", [1, 3, 64])  # 64 rows of 70,001 values: shared among threads
def test_draws_equal_the_torch_path(monkeypatch, batch: int) -> None:
    seeds = sample_seeds(7, torch.arange(batch) * 13)

    def make() -> list[torch.Tensor]:
        rng = BatchRNG(seeds)
        rng.bits(2)  # a later stream
        return draws(rng)

    _same(*_both_paths(monkeypatch, make))


def _images(batch: int, size: int) -> torch.Tensor:
    """Random images with exact 0s and 1s, uint8 levels (shot noise reads levels), grey pixels
    and ties between channels (HSV's special cases)."""
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(size))
    images[:, :, 0, 0], images[:, :, 0, 1] = 0.0, 1.0
    images[:, 0] = (images[:, 0] * 255).round() / 255
    images[:, :, 1] = images[:, :1, 1]  # grey: R = G = B
    images[:, 1, 2] = images[:, 0, 2]  # R = G
    images[:, 2, 3] = images[:, 1, 3]  # G = B
    images[:, 2, 4] = images[:, 0, 4]  # R = B
    return images


@needs_compiler
@pytest.mark.parametrize("name", IN_C + PARTLY_IN_C)
# odd value counts and sizes, many rows, the ImageNet-C table (and an odd size with it)
@pytest.mark.parametrize("shape", [(2, 5), (40, 32), (3, 224), (2, 101)])
def test_distortion_kernels_equal_the_torch_paths(monkeypatch, name: str, shape: tuple[int, int]) -> None:
    _same(*_both_paths(monkeypatch, _every_severity(name, shape)))


def _every_severity(name: str, shape: tuple[int, int]) -> Callable[[], list[torch.Tensor]]:
    """What both paths must agree on: a distortion of ``shape[0]`` images of ``shape[1]`` px at
    severities 1, 3 and 5 and at mixed severities, then a draw after the mixed call (the kernel
    used up exactly the torch path's streams)."""
    distortion = Registry(entry_points=False).get("distortion", name)()
    images = _images(*shape)
    seeds = sample_seeds(5, torch.arange(shape[0]))

    def make() -> list[torch.Tensor]:
        out = [distortion(images, severity, BatchRNG(seeds)) for severity in (1, 3, 5)]
        rng = BatchRNG(seeds)
        out.append(distortion.call_mixed(images, torch.arange(shape[0]) % 5 + 1, rng))
        return out + [rng.uniform(4)]

    return make


@pytest.fixture
def blur_in_c_at_every_width(monkeypatch) -> None:
    monkeypatch.setattr(_filters, "NATIVE_BLUR_MIN_WIDTH", 1)


@needs_compiler
@pytest.mark.usefixtures("blur_in_c_at_every_width")
@pytest.mark.parametrize("name", SUMMED_IN_C + ("snow",))  # snow: a motion-blurred layer, stored as uint8
@pytest.mark.parametrize("shape", [(3, 9), (24, 32), (2, 224)])
def test_kernels_that_sum_directly_agree_with_the_torch_paths(monkeypatch, name: str, shape: tuple[int, int]) -> None:
    compiled, plain = _both_paths(monkeypatch, _every_severity(name, shape))
    assert torch.equal(compiled.pop(), plain.pop())
    for a, b in zip(compiled, plain):
        assert a.shape == b.shape and a.dtype == b.dtype
        gap = (a - b).abs()
        if name == "snow":  # a layer value on a rounding boundary may round the other way: 1/255 apart
            assert gap.max() <= 2 / 255 + 1e-6 and (gap > 1e-5).float().mean() < 1e-3
        else:
            assert gap.max() < 2e-6


@needs_compiler
@pytest.mark.parametrize("shape", [(5, 37), (2, 224)])
def test_the_snow_kernel_equals_the_torch_path_given_the_same_layer(monkeypatch, shape: tuple[int, int]) -> None:
    monkeypatch.setattr(blur, "native", SimpleNamespace(takes=lambda images: False))  # the FFT motion blur: one layer
    _same(*_both_paths(monkeypatch, _every_severity("snow", shape)))


@needs_compiler
@pytest.mark.usefixtures("blur_in_c_at_every_width")
@pytest.mark.parametrize("mode", ["replicate", "symmetric", "reflect101"])
@pytest.mark.parametrize(("dtype", "tolerance"), [(torch.float32, 1e-6), (torch.float64, 1e-14)])
def test_the_blur_kernel_agrees_with_the_torch_path_in_every_border_mode(monkeypatch, mode: str, dtype: torch.dtype,
                                                                        tolerance: float) -> None:
    """Per-image sigmas, one of them different along each axis, kernels wider than the image;
    float32 images (images) and float64 ones (spatter's fields, in C at every width)."""
    images = torch.rand(6, 2, 13, 40, generator=torch.Generator().manual_seed(3), dtype=dtype)
    sigmas, which = (0.4, (1.0, 3.0), (6.0, 0.7), (0.7, 6.0)), torch.tensor([0, 1, 2, 3, 1, 0])

    def make() -> list[torch.Tensor]:
        return [gaussian_blur_each(images, sigmas, which, mode=mode), gaussian_blur_each(images, sigmas[1:], which % 2,
                                                                                          mode=mode, truncate=3.0)]

    compiled, plain = _both_paths(monkeypatch, make)
    for a, b in zip(compiled, plain):
        assert a.shape == b.shape and a.dtype == b.dtype == dtype and (a - b).abs().max() < tolerance


@needs_compiler
@pytest.mark.usefixtures("blur_in_c_at_every_width")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_blur_kernels_clamp_equals_clamping_afterwards(dtype: torch.dtype) -> None:
    """``clamp=True`` clamps each row as C writes it: the same values as ``clamp_(0, 1)`` after."""
    images = torch.rand(3, 2, 9, 30, generator=torch.Generator().manual_seed(4), dtype=dtype) * 2 - 0.5
    sigmas, which = (0.5, (2.0, 1.0)), torch.tensor([0, 1, 1])
    clamped = gaussian_blur_each(images, sigmas, which, clamp=True)
    blurred = gaussian_blur_each(images, sigmas, which)
    assert (blurred < 0).any() and (blurred > 1).any()  # the clamp has work to do
    assert torch.equal(clamped, blurred.clamp_(0.0, 1.0))


@needs_compiler
def test_the_motion_blur_kernels_clamp_equals_clamping_afterwards() -> None:
    """``clamp=True`` clamps each row as C writes it: the same values as ``clamp_(0, 1)`` after.
    Steep angles and kernels longer than the image: taps shifted past every border."""
    images = torch.rand(4, 2, 11, 29, generator=torch.Generator().manual_seed(5)) * 2 - 0.5
    weights = blur.motion_weights(blur._MOTION["imagenet-c"], torch.tensor([1, 3, 5, 2]), torch.device("cpu"))
    angles = torch.tensor([-45.0, 10.0, 45.0, 90.0])
    clamped = blur.motion_blur(images, weights, angles, clamp=True)
    blurred = blur.motion_blur(images, weights, angles)
    assert (blurred < 0).any() and (blurred > 1).any()  # the clamp has work to do
    assert torch.equal(clamped, blurred.clamp_(0.0, 1.0))


@needs_compiler
@pytest.mark.parametrize("shape", [(7, 40), (224, 97), (1, 3)])
def test_the_elastic_grid_kernel_equals_the_torch_steps(shape: tuple[int, int]) -> None:
    """ElasticTransform's grid in C: the field times alpha (zero too), added to the pixel's column
    and row, as grid_sample's normalised (x, y): the torch steps of ``digital._sample``, bit for bit
    (displacements past the borders too)."""
    h, w = shape
    field = torch.randn(3, 2, h, w, generator=torch.Generator().manual_seed(h)) * 4
    alpha = torch.tensor([1.0, 30.5, 0.0]).view(-1, 1, 1, 1)
    scaled = field * alpha
    xs = torch.arange(w, dtype=torch.float32).view(1, 1, w) + scaled[:, 0]
    ys = torch.arange(h, dtype=torch.float32).view(1, h, 1) + scaled[:, 1]
    expected = torch.stack([(2 * xs + 1) / w - 1, (2 * ys + 1) / h - 1], -1)
    grid = cpu_kernels.elastic_grid(field, alpha)
    assert grid.shape == (3, h, w, 2) and torch.equal(grid, expected)


@needs_compiler
@pytest.mark.parametrize("name", ["brightness", "saturate"])
def test_the_hsv_kernel_equals_the_torch_path_on_ties_and_nan(monkeypatch, name: str) -> None:
    """Pixels whose largest channel is shared (by two, or by all three: grey), black and white ones,
    and a NaN in one channel: the whole pixel NaN, as torch's max makes it (the kernel's selects
    must pick as the torch path's masks do)."""
    levels = torch.arange(256.0) / 255
    images = levels[torch.randint(0, 4, (6, 3, 9, 11), generator=torch.Generator().manual_seed(8)) * 85]
    images[0, :, 0, 0], images[0, :, 0, 1] = 0.0, 1.0
    for b, channel in enumerate(range(3), start=1):
        images[b, channel, 2 * b, 3] = float("nan")
    distortion = Registry(entry_points=False).get("distortion", name)()
    seeds = sample_seeds(2, torch.arange(6))

    def make() -> list[torch.Tensor]:
        return [distortion.call_mixed(images, torch.arange(6) % 5 + 1, BatchRNG(seeds))]

    compiled, plain = _both_paths(monkeypatch, make)
    assert torch.equal(compiled[0].isnan(), plain[0].isnan())
    assert torch.equal(compiled[0].nan_to_num(7.0), plain[0].nan_to_num(7.0))
    assert compiled[0][1, :, 2, 3].isnan().all() and compiled[0].isnan().sum() == 9


@needs_compiler
@pytest.mark.parametrize(("shape", "shift"), [((19, 23), 1), ((19, 23), 2), ((7, 40), 3), ((224, 96), 4), ((9, 9), 4),
                                              ((8, 3), 1), ((1, 5), 1)])
def test_the_glass_scan_in_c_equals_the_pointer_doubling(monkeypatch, shape: tuple[int, int], shift: int) -> None:
    """The scan pixel by pixel in C, one or four channels, images with fewer scans than the batch's
    (they ignore the later draws), regions of one row or none: the chains' ends, and the RNG's
    streams after it."""
    generator = torch.Generator().manual_seed(shift)
    batches = [torch.rand(3, 3, *shape, generator=generator), torch.rand(2, 4, *shape, generator=generator)]

    def make() -> list[torch.Tensor]:
        out = []
        for images in batches:
            rng = BatchRNG(sample_seeds(shift, torch.arange(images.shape[0])))
            each = torch.tensor([2.0, 3.0, 1.0][: images.shape[0]])
            out += [local_copies(images, shift, 3, rng, each), local_copies(images, shift, 2, rng), rng.uniform(2)]
        return out

    compiled, plain = _both_paths(monkeypatch, make)
    _same(compiled, plain)
    scanned = shape[0] > 2 * shift and shape[1] > 2 * shift  # the scan covers rows shift + 1 .. h - shift
    assert torch.equal(compiled[0], batches[0]) != scanned  # pixels moved where there is a region


@needs_compiler
@pytest.mark.usefixtures("blur_in_c_at_every_width")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_blur_kernels_levels_equal_the_torch_steps_afterwards(dtype: torch.dtype) -> None:
    """``levels=True`` makes each row uint8 levels / 255 as C writes it: the same values as
    ``floor(x * 255)``, clamped to [0, 255], / 255 after (values outside [0, 1] too)."""
    images = torch.rand(3, 2, 9, 30, generator=torch.Generator().manual_seed(4), dtype=dtype) * 2 - 0.5
    sigmas, which = (0.5, (2.0, 1.0)), torch.tensor([0, 1, 1])
    levels = gaussian_blur_each(images, sigmas, which, levels=True)
    blurred = gaussian_blur_each(images, sigmas, which)
    assert (blurred < 0).any() and (blurred > 1).any()
    expected = (blurred * 255).floor_().clamp_(0, 255) / 255
    assert torch.equal(levels, expected) and levels.dtype == dtype
    assert len(torch.unique(levels)) <= 256


DISKS = blur._DEFOCUS["imagenet-c"] + blur._DEFOCUS["cifar-10-c"]


@needs_compiler
@pytest.mark.parametrize(("radius", "alias"), DISKS)
def test_the_defocus_kernel_responds_to_a_point_with_the_reference_disk(radius: float, alias: float) -> None:
    """The Gaussian, the disk's rows and the corrections where the reference cuts its smoothing off
    at the kernel's edge (ImageNet-C's radii 8 and 10) add up to ``disk_kernel``, tap for tap."""
    kernel = _filters.disk_kernel(radius, alias)
    size = kernel.shape[0] + 6
    point = torch.zeros(1, 1, size, size + 1)
    point[..., size // 2, size // 2] = 1.0
    response = _filters.disk_blur_in_c(point, radius, alias)[0, 0]
    k = kernel.shape[0] // 2
    window = response[size // 2 - k : size // 2 + k + 1, size // 2 - k : size // 2 + k + 1]
    assert (window.double() - kernel).abs().max() < 1e-7  # the kernel is symmetric: correlation = convolution
    assert response.sum() - window.sum() < 1e-7  # nothing outside it


@needs_compiler
@pytest.mark.parametrize("shape", [(1, 1), (1, 6), (5, 2), (9, 37), (40, 64)])
def test_the_defocus_kernel_agrees_with_the_float64_filter_on_any_size(shape: tuple[int, int]) -> None:
    """Reflect-101 borders, folded more than once where the disk is wider than the image."""
    images = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(7))
    for radius, alias in DISKS:
        reference = _filters.filter2d(images.double(), _filters.disk_kernel(radius, alias)).clamp(0, 1)
        out = _filters.disk_blur_in_c(images, radius, alias)
        assert out.dtype == torch.float32 and (out.double() - reference).abs().max() < 5e-7, (radius, shape)


@needs_compiler
@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (7, 1), (3, 3), (24, 31), (37, 47), (64, 64), (90, 141)])
def test_the_spatter_water_kernel_equals_the_torch_path(monkeypatch, shape: tuple[int, int]) -> None:
    """Fields with no liquid at all, noise (edges everywhere, weak chains for the hysteresis),
    blobs with sharp rims, one bright pixel, a few levels (magnitudes on the thresholds), values
    beyond 0..1, one vertical edge and low contrast (mostly weak pixels), on images down to one
    row or column; one threshold and intensity, and one per image."""
    h, w = shape
    generator = torch.Generator().manual_seed(h * 100 + w)
    noise = torch.rand(2, 1, h, w, generator=generator, dtype=torch.float64)
    blobs = (torch.rand(2, 1, h, w, generator=generator) > 0.7).double() * 0.9
    dot = torch.zeros(1, 1, h, w, dtype=torch.float64)
    dot[..., h // 2, w // 2] = 1.0
    # levels 100, 125, 150, 175 (above the cuts): gradient magnitudes are multiples of 25, often
    # exactly 50 or 150
    steps = (torch.randint(0, 4, (2, 1, h, w), generator=generator) * 25 + 100.5).double() / 255
    # low contrast: weak pixels far outnumber the edges, and only some of their chains reach one
    # (the kernel's hysteresis then grows the edges from the weak pixels, not from the edges)
    gentle = _filters.gaussian_blur(torch.rand(2, 1, h, w, generator=generator, dtype=torch.float64), 1.0)
    gentle = (gentle - 0.5) * 0.4 + 0.6
    wide = noise * 1.6 - 0.3  # levels clamped at both ends
    # a vertical edge where a row's last quarter starts, where the C distance's stretches meet
    # (test_the_water_kernels_distance_is_opencvs checks their carries value for value)
    cliff = torch.zeros(1, 1, h, w, dtype=torch.float64)
    cliff[..., 3 * (w // 4) :] = 0.9  # wet on the right, where the carried distances land
    layer = torch.cat([torch.zeros(1, 1, h, w, dtype=torch.float64), noise, blobs, dot, steps, wide, cliff, gentle])
    images = torch.rand(layer.shape[0], 3, h, w, generator=generator)
    each = torch.linspace(0.3, 1.5, layer.shape[0]).view(-1, 1, 1, 1)  # per image, as spatter_each
    cuts = torch.linspace(0.0, 0.6, layer.shape[0], dtype=torch.float64).view(-1, 1, 1, 1)

    def make() -> list[torch.Tensor]:
        return [_spatter._water(images, layer, 0.3, 0.6), _spatter._water(images, layer, cuts, each)]

    _same(*_both_paths(monkeypatch, make))


@needs_compiler
def test_spatters_field_equals_torchs_promoted_product_and_sum(monkeypatch) -> None:
    """float32 draws * float64 scale + loc, as torch computes them (the reference's field, before a
    threshold and a floor that would hide a last-bit difference), for scalars and per-image values."""
    noise = torch.randn(3, 17, 29, generator=torch.Generator().manual_seed(4)) * 3
    scales = torch.tensor([0.3, 0.1, 0.4], dtype=torch.float64).view(-1, 1, 1, 1)
    locs = torch.tensor([0.65, 0.62, 0.67], dtype=torch.float64).view(-1, 1, 1, 1)

    def make() -> list[torch.Tensor]:
        return [_spatter._field(noise, 0.3, 0.65), _spatter._field(noise, scales, locs)]

    compiled, plain = _both_paths(monkeypatch, make)
    _same(compiled, plain)
    assert plain[0].dtype == torch.float64 and torch.equal(plain[1], noise.double()[:, None] * scales + locs)


@needs_compiler
@pytest.mark.parametrize("shape", [(5, 7), (23, 31), (29, 35), (37, 47), (40, 64), (61, 141)])
def test_the_water_kernels_distance_is_opencvs(shape: tuple[int, int]) -> None:
    """The C distance (two raster passes, the step along a row as four stretches and their carries)
    bit for bit cv2.distanceTransform(DIST_L2, 5) truncated at 20: random edges, a vertical line
    at each stretch boundary and one pixel before it (carries across a whole stretch and into the
    row's remainder), edges on the borders, none."""
    import cv2

    h, w = shape
    generator = torch.Generator().manual_seed(h * 1000 + w)
    masks = [torch.rand(h, w, generator=generator) > p for p in (0.99, 0.9, 0.6)]
    quarter = w // 4
    for column in sorted({max(0, k * quarter + d) for k in range(4) for d in (-1, 0)} | {w - 1}):
        line = torch.zeros(h, w, dtype=torch.bool)
        line[:, column] = True
        masks.append(line)
    frame = torch.zeros(h, w, dtype=torch.bool)
    frame[0] = frame[-1] = frame[:, 0] = frame[:, -1] = True
    masks += [frame, torch.zeros(h, w, dtype=torch.bool)]
    edges = torch.stack(masks)[:, None]
    ours = cpu_kernels.chamfer_distance(edges)
    for mask, distance in zip(edges[:, 0].numpy(), ours[:, 0]):
        expected = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
        assert torch.equal(distance, torch.from_numpy(np.minimum(expected, 20.0)))


def _basis_signs() -> torch.Tensor:
    """Where each of the 64 8 x 8 DCT basis functions is positive: bool ``(u, v, y, x)``."""
    k = torch.arange(8, dtype=torch.float64)
    basis = torch.cos((2 * k[None, :] + 1) * k[:, None] * torch.pi / 16)  # basis[u, x]
    return basis[:, None, :, None] * basis[None, :, None, :] > 0


def _build(tmp_path_factory: pytest.TempPathFactory, name: str, flag: str, x86: bool = True) -> native.NativeLibrary:
    """The C kernels built with the compiler flag ``flag`` in a cache of their own (``x86``: an x86
    option, skipped elsewhere)."""
    if x86 and platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip(f"{flag} is an x86 option")
    compiler = f"{os.environ.get('CC') or 'cc'} {flag}"
    library = native.NativeLibrary(cache_dir=tmp_path_factory.mktemp(name), compiler=compiler)
    assert library.load() is not None
    return library


@pytest.fixture(scope="module")
def portable_library(tmp_path_factory: pytest.TempPathFactory) -> native.NativeLibrary:
    """The C kernels built with ROBENCH_PORTABLE: the generic paths that machines without SSE2
    take (jpeg_compression's DCTs in int32 lanes instead of SSE2's 16-bit ones)."""
    return _build(tmp_path_factory, "portable", "-DROBENCH_PORTABLE", x86=False)


@pytest.fixture(scope="module")
def ssse3_library(tmp_path_factory: pytest.TempPathFactory) -> native.NativeLibrary:
    """The C kernels built with -mno-sse4.1 (so without AVX or FMA either, which build on it): the
    SIMD build of x86-64 machines with SSSE3 alone, whose conversion out divides every vector by
    255 (no FMA) and whose inverse DCTs clamp their levels at 0 with pmaxsw (no packusdw)."""
    return _build(tmp_path_factory, "ssse3", "-mno-sse4.1")


@pytest.fixture(scope="module")
def sse41_library(tmp_path_factory: pytest.TempPathFactory) -> native.NativeLibrary:
    """The C kernels built with -mno-avx: the SIMD build of x86-64 machines with SSE4.1 but not
    AVX (Intel's Nehalem and Westmere), whose intrinsics come from SSE4.1's own header."""
    return _build(tmp_path_factory, "sse41", "-mno-avx")


def _use_build(monkeypatch, request: pytest.FixtureRequest, build: str) -> None:
    """The C kernels of ``build``: "native" (this machine's), "portable", "ssse3" or "sse41" (the
    fixtures of those names)."""
    if build != "native":
        monkeypatch.setattr(native, "LIBRARY", request.getfixturevalue(f"{build}_library"))


@needs_compiler
@pytest.mark.parametrize("build", ["native", "portable", "ssse3", "sse41"])
def test_the_jpeg_kernel_decodes_every_grey_level_to_itself_at_quality_100(monkeypatch, request, build: str) -> None:
    """A 16 x 16 MCU of each grey level k of 0 .. 255 is coded losslessly at quality 100 (its DC
    alone, quantiser 1; chroma 128), so it decodes to k / 255 in every channel and column. The
    conversion out's k / 255 (divps, or on machines with FMA a fused product-sum for two vectors
    in six) must round as torch's division does for every level, in every lane."""
    _use_build(monkeypatch, request, build)
    levels = torch.arange(256, dtype=torch.float32) / 255
    image = levels.repeat_interleave(16).expand(3, 16, 256 * 16)[None].contiguous()
    compiled, plain = _both_paths(monkeypatch, lambda: [jpeg_roundtrip(image, 100)])
    assert torch.equal(compiled[0], image) and torch.equal(plain[0], image)


@needs_compiler
@pytest.mark.parametrize("build", ["native", "portable", "ssse3"])
def test_the_jpeg_kernel_equals_the_torch_path_at_every_padding_and_quality(
    monkeypatch, request, build: str
) -> None:
    """Sizes with every remainder that matters: partial 8x8 blocks and 16x16 MCUs, odd heights
    and widths, chroma planes 1 or 2 wide (replicated, not filtered); qualities at both ends; the
    largest coefficients the transforms meet (black, white, one-pixel checkerboards and stripes in
    every channel, and each of the 64 DCT basis functions' sign pattern at full contrast: the
    16-bit lanes of the SIMD build must hold them as libjpeg's INT32 does); values beyond [0, 1];
    and values halfway between two levels (rounded half to even); black, white and grey images,
    whose blocks keep their DC alone (the SIMD build's shortcut, clamped at both ends at coarse
    qualities). Every build: the SIMD DCTs (with SSE4.1 and FMA, and with SSSE3 alone) and the
    generic int32 ones."""
    _use_build(monkeypatch, request, build)
    sizes = [(1, 1), (2, 3), (3, 4), (5, 2), (9, 5), (16, 17), (17, 16), (23, 31), (33, 40)]
    generator = torch.Generator().manual_seed(0)
    batches = [torch.rand(3, 3, h, w, generator=generator) for h, w in sizes]
    y, x = torch.meshgrid(torch.arange(32), torch.arange(40), indexing="ij")
    patterns = [torch.zeros(32, 40), torch.ones(32, 40), ((y + x) % 2).float(), (x % 2).float(), (y % 2).float()]
    batches.append(torch.stack([torch.stack([p, 1 - p, p]) for p in patterns]))
    batches.append(torch.stack([torch.full((3, 24, 40), level) for level in (0.0, 1.0, 0.5)]))  # grey: DC alone
    # block (u, v) of a 64 x 64 image: black or white by the sign of DCT basis function (u, v)
    signs = _basis_signs().float()  # (u, v, y, x)
    tiles = signs.permute(0, 2, 1, 3).reshape(64, 64)
    batches.append(torch.stack([torch.stack([tiles, 1 - tiles, tiles]), torch.stack([1 - tiles, tiles, 1 - tiles])]))
    batches.append(torch.rand(2, 3, 19, 21, generator=generator) * 1.6 - 0.3)  # levels clamped at both ends
    halves = ((torch.arange(255, dtype=torch.float64) + 0.5) / 255).float()  # x * 255 = k + 1/2 exactly
    batches.append(halves[torch.randperm(255, generator=generator)].repeat(6)[: 2 * 3 * 17 * 15].view(2, 3, 17, 15))

    def make() -> list[torch.Tensor]:
        out = []
        for images in batches:
            out += [jpeg_roundtrip(images, quality) for quality in (0, 10, 50, 95, 100)]
            out.append(jpeg_roundtrip(images, (5, 30, 80), torch.arange(len(images)) * 2 % 3))
        return out

    _same(*_both_paths(monkeypatch, make))


@needs_compiler
def test_the_jpeg_kernel_converts_every_red_green_pair_with_blues_across_the_range(monkeypatch) -> None:
    """The colour transform in (the SIMD build's pmaddwd pairs and pavgw roundings) on 256 x 256
    images holding every (R, G) pair of levels once, B running through all 256 levels in a
    different order in each (2^17 triples; all 2^24 were checked when it was written), coded at
    quality 100: equal to the torch path, where libjpeg's formulas are written plainly."""
    y, x = torch.meshgrid(torch.arange(256), torch.arange(256), indexing="ij")
    blues = [(x + y) % 256, (7 * x + 101 * y + 3) % 256]
    images = torch.stack([torch.stack([x, y, b]) for b in blues]).float() / 255
    _same(*_both_paths(monkeypatch, lambda: [jpeg_roundtrip(images, 100)]))


@needs_compiler
def test_the_jpeg_kernel_keeps_every_coefficient_of_nearly_flat_chroma_blocks(monkeypatch) -> None:
    """Chroma blocks whose levels span 0 .. 33, each in the sign pattern of one of the 64 DCT basis
    functions (the pattern that drives that coefficient hardest for its span), at qualities whose
    largest span kept as DC alone runs from 31 down to 0: the SIMD build codes a chroma block that
    spans no more than its bound allows (flat_range) as its DC alone, without the DCTs, and must
    equal the torch path on both sides of every bound. Then blocks of one or two levels whose DC
    lies on, or next to, each quality's rounding ties (|DC| = 4q + 8qk). B = 128 + 2k with
    R = G = 128 makes Cb exactly 128 + k, and 2 x 2 equal pixels downsample to it."""
    signs = _basis_signs().long().view(64, 8, 8)  # (pattern, y, x)
    spans = torch.arange(34)[:, None, None, None]
    chroma = 128 - spans // 2 + spans * signs  # (span, pattern, 8, 8): blocks of Cb levels
    qualities = (1, 4, 5, 6, 7, 10, 15, 25, 50, 80, 100)  # largest spans kept: 31, 30, 24, 20, 17, 12, 8, 4, 2, 0, 0
    dc_steps = (255, 213, 170, 142, 121, 85, 57, 34, 17, 7, 1)  # their chroma tables' DC quantisers
    sums = sorted({sign * (4 * q + 8 * q * j) + near for q in dc_steps for j in (0, 1) for sign in (-1, 1) for near in (-1, 0, 1)})
    ties = torch.full((3 * 64, 64), 128)
    for i, total in enumerate(sums):  # total = sum of (level - 128): 64 (c - 128) + (how many are c + 1)
        ties[i] = 128 + total // 64
        ties[i, : total % 64] += 1
    chroma = torch.cat([chroma, ties.view(3, 64, 8, 8)])
    plane = chroma.permute(0, 2, 1, 3).reshape(-1, 64 * 8)  # a row of blocks per span, then the ties
    blue = (128 + 2 * (plane - 128)).repeat_interleave(2, 0).repeat_interleave(2, 1)
    grey = torch.full_like(blue, 128)
    image = torch.stack([grey, grey, blue]).float() / 255
    assert len(sums) <= 3 * 64 and 0 <= blue.min() and blue.max() <= 255
    images = image[None].repeat(len(qualities), 1, 1, 1)
    _same(*_both_paths(monkeypatch, lambda: [jpeg_roundtrip(images, qualities, torch.arange(len(qualities)))]))


@needs_compiler
@pytest.mark.parametrize("build", ["native", "portable", "ssse3"])
def test_the_pixelate_kernel_equals_the_torch_path_on_oblong_images(monkeypatch, request, build: str) -> None:
    """Heights and widths apart, each below, at and past a multiple of the kernel's 8-row bands
    and 8 x 8 tiles (short last bands, narrow planes whose small side is under 8), both tables,
    and levels outside [0, 255] (values outside [0, 1]: the box sums before the clamp). Its
    windows are all within 64 pixels, the SIMD build's int16 path (the next test takes wider
    ones). Each build: the generic one, and the SIMD one with FMA (its small planes' / 255 fused)
    and without."""
    _use_build(monkeypatch, request, build)
    sizes = [(7, 53), (53, 9), (8, 200), (230, 17), (129, 130)]
    generator = torch.Generator().manual_seed(3)
    batches = [torch.rand(2, 3, h, w, generator=generator) * 1.4 - 0.2 for h, w in sizes]
    distortion = Registry(entry_points=False).get("distortion", "pixelate")()
    seeds = sample_seeds(0, torch.arange(2))

    def make() -> list[torch.Tensor]:
        return [distortion(images, severity, BatchRNG(seeds)) for images in batches for severity in (1, 3, 5)]

    _same(*_both_paths(monkeypatch, make))


@needs_compiler
def test_the_pixelate_kernel_equals_the_torch_path_with_windows_past_64(monkeypatch) -> None:
    """Box windows wider than 64 pixels (factors below the tables'): the SIMD build's int16 sums
    could overflow there, so it takes its int32 path; both must equal the torch path."""
    monkeypatch.setattr(digital, "_PIXELATE", {name: (0.01, 0.02, 0.3, 0.4, 0.5) for name in digital._PIXELATE})
    images = torch.rand(2, 3, 150, 131, generator=torch.Generator().manual_seed(4)) * 0.3 + 0.9  # sums past 2^15
    distortion = Registry(entry_points=False).get("distortion", "pixelate")()
    seeds = sample_seeds(0, torch.arange(2))
    _same(*_both_paths(monkeypatch, lambda: [distortion(images, severity, BatchRNG(seeds)) for severity in (1, 2, 3)]))


@needs_compiler
@pytest.mark.parametrize("build", ["native", "portable"])
def test_the_pixelate_kernel_equals_the_torch_path_for_windows_of_5_to_64(monkeypatch, request, build: str) -> None:
    """Windows of 5-6, 11-12, 27-29, 47-51 and 63-64 pixels, on levels from -51 to 306. The SSE2
    build weighs a window's sum by one 16-bit product where one is exact for every sum it can
    reach (widths 5, 6, 11, 12, 27, 29, 51 and 64 here) and by the int32 product where none is (28,
    47, 48, 50, 63), the two mixed within some passes; both builds equal the torch path."""
    _use_build(monkeypatch, request, build)
    monkeypatch.setattr(digital, "_PIXELATE", {name: (1 / 5, 1 / 11, 1 / 26, 1 / 43, 1 / 63) for name in digital._PIXELATE})
    images = torch.rand(2, 3, 190, 253, generator=torch.Generator().manual_seed(6)) * 1.4 - 0.2
    distortion = Registry(entry_points=False).get("distortion", "pixelate")()
    seeds = sample_seeds(0, torch.arange(2))
    _same(*_both_paths(monkeypatch, lambda: [distortion(images, severity, BatchRNG(seeds)) for severity in range(1, 6)]))


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` inside, restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _parallel_calls(total: int, cost: int, work: Callable[[int, int], object] | None = None) -> list[tuple]:
    """native.parallel's calls of its work on two threads: (ran on the calling thread, begin, end)."""
    caller, calls = threading.current_thread(), []

    def record(begin: int, end: int) -> None:
        calls.append((threading.current_thread() is caller, begin, end))
        if work is not None:
            work(begin, end)

    with _torch_threads(2):
        native.parallel(record, total, cost)
    return calls


def test_parallel_covers_every_index_once_in_chunks_of_at_least_the_streaming_share() -> None:
    """Large calls go in up to four chunks a thread; each keeps at least 2^22 values of cost (the
    streaming kernels' threshold) where the call's halves would, and small calls stay whole."""
    plane = 224 * 224
    chunks = sorted(call[1:] for call in _parallel_calls(768, 768 * plane))  # pixelate, 256 images at 224 px
    assert chunks == [(96 * i, 96 * (i + 1)) for i in range(8)]
    # 251 planes: thirds would leave one of 83 planes (4.16 M values) short of 2^22 = 4.19 M
    assert sorted(call[1:] for call in _parallel_calls(251, 251 * plane)) == [(0, 125), (125, 251)]
    assert sorted(call[1:] for call in _parallel_calls(7, 1 << 40)) == [(i, i + 1) for i in range(7)]
    assert _parallel_calls(10, 1000) == [(True, 0, 10)]  # below the hand-off's cost: one call, this thread


def test_parallel_gives_a_slow_threads_chunks_to_the_other() -> None:
    """A thread held up (its vCPU taken by another guest) does one chunk while the other does the
    rest, instead of each doing its fixed half."""
    caller = threading.current_thread()

    def work(begin: int, end: int) -> None:
        time.sleep(0.001 if threading.current_thread() is caller else 0.5)

    calls = _parallel_calls(8, 1 << 40, work)
    assert sorted(call[1:] for call in calls) == [(i, i + 1) for i in range(8)]
    assert [call[0] for call in calls].count(False) == 1


def test_parallel_raises_a_chunks_error_once_no_chunk_runs() -> None:
    """An error in one chunk stops the claiming of more and is raised after the chunks in flight
    have finished (none writes after the call returns)."""
    caller, running, finished = threading.current_thread(), [0], []

    def work(begin: int, end: int) -> None:
        if threading.current_thread() is caller:
            time.sleep(0.05)  # the other thread's first chunk is under way
            raise ValueError("a bad chunk")
        running[0] += 1
        time.sleep(0.2)
        running[0] -= 1
        finished.append(begin)

    with pytest.raises(ValueError, match="a bad chunk"):
        _parallel_calls(8, 1 << 40, work)
    assert running[0] == 0 and len(finished) == 1  # its chunk finished; no more were claimed


@needs_compiler
@pytest.mark.usefixtures("blur_in_c_at_every_width")
@pytest.mark.parametrize("name", IN_C + PARTLY_IN_C + SUMMED_IN_C + ("snow", "glass_blur", "elastic_transform"))
def test_kernels_give_the_same_pixels_in_any_chunks(monkeypatch, name: str) -> None:
    """Every C kernel, its batch split into chunks of one or two items on two threads, equals
    the same call on one thread (nothing in a kernel depends on where its part begins)."""
    make = _every_severity(name, (7, 40))
    with _torch_threads(1):
        whole = make()
    monkeypatch.setattr(native, "_PARALLEL_MIN", 1)
    monkeypatch.setattr(native, "_CHUNK_MIN_COST", 1)
    with _torch_threads(2):
        _same(make(), whole)


@needs_compiler
def test_the_pixelate_kernel_streams_a_large_output_exactly(monkeypatch) -> None:
    """Past 16 MiB of output per thread the kernel writes rows with non-temporal stores, from the
    first 32-byte boundary of each row on: rows 1,357 values long start at every alignment."""
    images = torch.rand(1, 3, 1031, 1357, generator=torch.Generator().manual_seed(5))
    distortion = Registry(entry_points=False).get("distortion", "pixelate")()
    seeds = sample_seeds(0, torch.arange(1))
    with _torch_threads(1):  # one part of 4.2 M values: it streams
        _same(*_both_paths(monkeypatch, lambda: [distortion(images, 5, BatchRNG(seeds))]))


@needs_compiler
def test_the_jpeg_kernel_streams_a_large_output_exactly(monkeypatch) -> None:
    """Past 16 MiB of output per thread, in rows 16-byte aligned (widths a multiple of 4), the SIMD
    conversion out writes with non-temporal stores: an image of 4.2 M values, at a quality whose
    blocks take all three inverses (DC alone, 2 x 2, full)."""
    images = torch.rand(1, 3, 1024, 1368, generator=torch.Generator().manual_seed(6))
    images = torch.nn.functional.avg_pool2d(images, 5, stride=1, padding=2)  # smooth: shortcuts taken too
    assert images.numel() >= 1 << 22 and images.data_ptr() % 16 == 0
    with _torch_threads(1):  # one part: it streams
        _same(*_both_paths(monkeypatch, lambda: [jpeg_roundtrip(images, 30)]))


@needs_compiler
@pytest.mark.parametrize("threads", [1, 2])
def test_the_zoom_kernel_rounds_as_torchs_resize_kernels(monkeypatch, threads: int) -> None:
    """torch's CPU bilinear resize rounds as one of two kernels, by output size (rows plus columns
    at most 128: 64 px with the factor 1.0 is exactly 128, with 1.01 past it) and, for three
    channels, by its thread count; the C kernel follows it in each case."""
    generator = torch.Generator().manual_seed(4)
    batches = [torch.rand(2, 3, size, size, generator=generator) for size in (5, 64, 224)]
    distortion = Registry(entry_points=False).get("distortion", "zoom_blur")()
    seeds = sample_seeds(0, torch.arange(2))

    def make() -> list[torch.Tensor]:
        return [distortion(images, severity, BatchRNG(seeds)) for images in batches for severity in (1, 5)]

    with _torch_threads(threads):
        _same(*_both_paths(monkeypatch, make))


@needs_compiler
@pytest.mark.parametrize("mapsize", [2, 8, 64])
def test_the_plasma_kernel_equals_the_torch_path(monkeypatch, mapsize: int) -> None:
    seeds = sample_seeds(9, torch.arange(5))
    decays = torch.tensor([1.5, 2.0, 3.0, 2.0, 1.5])

    def make() -> list[torch.Tensor]:
        return [plasma_fractals(BatchRNG(seeds), mapsize, 3.0, decays)]

    _same(*_both_paths(monkeypatch, make))


@needs_compiler
def test_distortions_in_c_take_the_whole_batch_on_the_cpu(monkeypatch) -> None:
    monkeypatch.setattr(host_memory, "_applied", None)  # the allocator as the OS has it
    registry = Registry(entry_points=False)
    for name in IN_C + PARTLY_IN_C + SUMMED_IN_C:
        assert registry.get("distortion", name)().cpu_chunk_values is None
    assert registry.get("distortion", "low_resolution")().cpu_chunk_values == CPU_CHUNK_VALUES  # torch code: chunks
    monkeypatch.setenv("ROBENCH_FUSED", "0")
    assert registry.get("distortion", "gaussian_noise")().cpu_chunk_values == CPU_CHUNK_VALUES


def test_with_freed_memory_kept_distortions_take_larger_chunks(monkeypatch) -> None:
    monkeypatch.setattr(host_memory, "_applied", True)
    monkeypatch.setenv("ROBENCH_FUSED", "0")
    registry = Registry(entry_points=False)
    for name in registry.names("distortion"):
        assert registry.get("distortion", name)().cpu_chunk_values == CPU_CHUNK_VALUES_KEPT, name


def test_batches_off_the_cpu_never_consult_the_cpu_kernels(monkeypatch) -> None:
    """A GPU run must not compile (or warn about) CPU kernels: only CPU batches ask about chunks."""
    monkeypatch.setattr(native, "available", lambda device: pytest.fail(f"asked about {device}"))
    distortion = Registry(entry_points=False).get("distortion", "gaussian_noise")()
    images = torch.empty(20, 3, 224, 224, device="meta")  # on the CPU, 20 such images would be chunked
    out = distortion._run(images, BatchRNG(sample_seeds(0, torch.arange(20))), lambda x, rows, part: x)
    assert out.shape == images.shape and out.device == images.device


@needs_compiler
def test_shot_noise_rejects_values_outside_the_unit_range() -> None:
    distortion = Registry(entry_points=False).get("distortion", "shot_noise")()
    images = _images(2, 8)
    images[1, 2, 3, 4] = 1.5
    with pytest.raises(ValueError, match=r"shot_noise takes images in \[0, 1\]; 1 values were outside"):
        distortion(images, 2, BatchRNG(sample_seeds(0, torch.arange(2))))


def test_other_devices_dtypes_and_the_switch_take_the_torch_path(monkeypatch) -> None:
    assert not native.available(torch.device("meta"))
    assert not native.takes(torch.zeros(2, 3, dtype=torch.float64))
    monkeypatch.setenv("ROBENCH_FUSED", "0")
    assert not native.available(torch.device("cpu"))


@needs_compiler
def test_the_library_is_built_once_per_machine(tmp_path: Path) -> None:
    first = native.NativeLibrary(cache_dir=tmp_path)
    assert first.load() is not None
    built = list(tmp_path.iterdir())
    assert len(built) == 1 and built[0].suffix == ".so"  # no partial file left beside it
    stamp = built[0].stat().st_mtime_ns
    assert native.NativeLibrary(cache_dir=tmp_path).load() is not None
    assert list(tmp_path.iterdir()) == built and built[0].stat().st_mtime_ns == stamp


@pytest.mark.parametrize("problem", ["no compiler", "a compile error"])
def test_a_failed_build_falls_back_with_one_warning(tmp_path: Path, caplog, problem: str) -> None:
    source = tmp_path / "broken.c"
    source.write_text("this is not C\n")
    if problem == "no compiler":
        library = native.NativeLibrary(cache_dir=tmp_path / "cache", compiler=str(tmp_path / "no-such-cc"))
    else:
        if not HAS_COMPILER:
            pytest.skip("needs a C compiler")
        library = native.NativeLibrary(source, cache_dir=tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="robench.native"):
        assert library.load() is None
        assert library.load() is None
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "using the torch paths" in warnings[0].getMessage()
    assert library.failed
    assert not (tmp_path / "cache").exists() or not list((tmp_path / "cache").iterdir())  # nothing half-built
