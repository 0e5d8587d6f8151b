"""Fidelity of the corruptions to the references, on real CIFAR-10 images at every severity.

Against ``imagecorruptions`` 1.1.2 (ImageNet-C parameters; robench is forced onto that table):
deterministic corruptions must give the reference's pixels, random ones the reference's
distribution of damage (mean PSNR to the clean image within a stated tolerance). The reference
truncates its output to uint8, so robench's output is truncated the same way before comparing.
CIFAR-10-C specifics (the 32-px table's own steps) are checked against scipy / Pillow directly.
``spatter`` and ``jpeg_compression`` have their own files (test_spatter_op.py, test_jpeg_codec.py).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions._fractal import plasma_fractal
from robench_plugins.distortions._glass import local_copies
from robench_plugins.distortions.blur import ZoomBlur, motion_blur, motion_weights

from reference import imagecorruptions, psnr, real_images, reference, to_uint8_hwc

REGISTRY = Registry(entry_points=False)
SEVERITIES = (1, 2, 3, 4, 5)
DETERMINISTIC = ("gaussian_blur", "defocus_blur", "zoom_blur", "contrast", "brightness", "saturate", "pixelate")
# tolerance on the mean PSNR (dB) over 48 images and 2 seeds; frost departs on purpose
RANDOM = {
    "gaussian_noise": 0.3, "shot_noise": 0.3, "impulse_noise": 0.3, "speckle_noise": 0.3,
    "glass_blur": 0.4, "motion_blur": 0.8, "elastic_transform": 0.5, "fog": 0.8, "snow": 0.8,
    "frost": 1.6,
}


def ours(name: str, images: torch.Tensor, severity: int, seed: int, table: str = "imagenet-c") -> torch.Tensor:
    distortion = REGISTRY.get("distortion", name)()
    distortion.table_override = table
    out = distortion(images, severity, BatchRNG(sample_seeds(seed, torch.arange(images.shape[0]))))
    return (out * 255).floor() / 255  # as the reference's np.uint8(...)


@pytest.mark.parametrize("size", [32, 96])
@pytest.mark.parametrize("name", DETERMINISTIC)
def test_deterministic_corruptions_give_the_reference_pixels(name: str, size: int) -> None:
    images = real_images(12 if size == 32 else 4, size)
    for severity in SEVERITIES:
        diff = (ours(name, images, severity, 0) - reference(name, images, severity)).abs() * 255
        assert diff.mean() < 0.25, (severity, float(diff.mean()))
        assert diff.max() <= 1.0 + 1e-4, (severity, float(diff.max()))


@pytest.mark.parametrize("name", sorted(RANDOM))
def test_random_corruptions_match_the_reference_damage(name: str) -> None:
    images = real_images(48, 32)
    for severity in SEVERITIES:
        mine = torch.cat([psnr(images, ours(name, images, severity, seed)) for seed in (1, 2)])
        theirs = torch.cat([psnr(images, reference(name, images, severity, seed)) for seed in (1, 2)])
        gap = float(mine.mean() - theirs.mean())
        assert abs(gap) <= RANDOM[name], f"severity {severity}: {mine.mean():.2f} vs {theirs.mean():.2f} dB"


# float64: the FFT (torch path); float32 on the CPU: the direct sum in C where it is compiled
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_motion_blur_kernel_is_the_reference_at_given_angles(dtype: torch.dtype) -> None:
    ic = imagecorruptions()
    images = real_images(6, 32).to(dtype)
    # motion_blur's angles and snow's; at 32 px the longer kernels leave the image (the sum stops)
    angles = torch.tensor([-45.0, -20.0, 0.0, 13.7, -101.5, -135.0])
    for radius, sigma in [(10, 3), (20, 15), (6, 1), (9, 2.5)]:
        # in a table beside a longer kernel: its weights zero-padded, the same blur
        table = ((radius, sigma), (25, 3.0))
        weights = motion_weights(table, torch.ones(6, dtype=torch.int64), torch.device("cpu"))
        assert weights.shape == (6, 51)
        mine = motion_blur(images, weights, angles).double()
        for k in range(6):
            expected = ic.corruptions._motion_blur(images[k].permute(1, 2, 0).double().numpy(), radius, sigma,
                                                   float(angles[k]))
            assert np.abs(mine[k].permute(1, 2, 0).numpy() - expected).max() < 1e-6


def test_plasma_fractal_is_the_reference_given_the_same_uniforms(monkeypatch: pytest.MonkeyPatch) -> None:
    ic = imagecorruptions()
    mine = plasma_fractal(BatchRNG(sample_seeds(0, torch.arange(1))), 32, 2.0)[0].double().numpy()
    feed = BatchRNG(sample_seeds(0, torch.arange(1)))
    monkeypatch.setattr(np.random, "uniform", lambda low, high, shape: low + (high - low) *
                        feed.uniform(*shape)[0].double().numpy())
    assert np.abs(mine - ic.corruptions.plasma_fractal(mapsize=32, wibbledecay=2.0)).max() < 1e-6


def sequential_copies(images: torch.Tensor, shift: int, iterations: int, rng: BatchRNG) -> torch.Tensor:
    """The reference's glass-blur scan, pixel by pixel, with robench's random offsets."""
    from robench_plugins.distortions._glass import _scan_order

    b, _, h, w = images.shape
    flat, _ = _scan_order(h, w, shift, torch.device("cpu"))
    slot = {int(p): k for k, p in enumerate(flat)}
    x = images.clone()
    for _ in range(iterations):
        offsets = rng.integers(-shift, shift, flat.numel(), 2)
        for i in range(b):
            for row in range(h - shift, shift, -1):
                for col in range(w - shift, shift, -1):
                    dx, dy = offsets[i, slot[row * w + col]].tolist()
                    x[i, :, row, col] = x[i, :, row + dy, col + dx]  # the reference's "swap"
    return x


@pytest.mark.parametrize("kernels", ["on", "off"])  # on: the scan in C where a compiler is; off: pointer doubling
@pytest.mark.parametrize(("shift", "iterations"), [(1, 2), (2, 1), (4, 2)])
def test_glass_blur_chains_equal_the_sequential_scan(monkeypatch, shift: int, iterations: int, kernels: str) -> None:
    if kernels == "off":
        monkeypatch.setenv("ROBENCH_FUSED", "0")
    images = torch.rand(2, 3, 19, 23, generator=torch.Generator().manual_seed(shift))
    seeds = sample_seeds(shift, torch.arange(2))
    chained = local_copies(images, shift, iterations, BatchRNG(seeds))
    assert torch.equal(chained, sequential_copies(images, shift, iterations, BatchRNG(seeds)))


def test_glass_blur_chain_ends_without_stopping_early_are_the_same() -> None:
    # A GPU runs every pointer-doubling round; the CPU stops when all chains have ended.
    from robench_plugins.distortions._glass import _chain_ends, _scan_order

    order, region = _scan_order(40, 40, 3, torch.device("cpu"))
    offsets = BatchRNG(sample_seeds(0, torch.arange(4))).integers(-3, 3, order.numel(), 2)
    source = order[None] + offsets[..., 1] * 40 + offsets[..., 0]
    early = _chain_ends(order, source, region, stop_early=True)
    assert torch.equal(early, _chain_ends(order, source, region, stop_early=False))
    assert not torch.equal(early, torch.arange(1600).expand(4, -1))  # the copies moved pixels


def test_glass_blur_reproduces_the_reference_copy_not_swap() -> None:
    """numpy's ``a[p], a[q] = a[q], a[p]`` on views copies; the reference relies on it."""
    x = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    x[0, 0], x[1, 1] = x[1, 1], x[0, 0]
    assert x[0, 0].tolist() == x[1, 1].tolist() == [9, 10, 11]


@pytest.mark.parametrize("severity", SEVERITIES)
def test_cifar_zoom_blur_trims_the_centre_as_the_cifar_script(severity: int) -> None:
    images = real_images(4, 32)
    zooms = [np.arange(1, 1.06, 0.01), np.arange(1, 1.11, 0.01), np.arange(1, 1.16, 0.01),
             np.arange(1, 1.21, 0.01), np.arange(1, 1.26, 0.01)][severity - 1]
    expected = []
    for image in images.permute(0, 2, 3, 1).numpy():
        total = np.zeros_like(image)
        for z in zooms:
            crop = math.ceil(32 / z)
            top = (32 - crop) // 2
            zoomed = ndimage.zoom(image[top:top + crop, top:top + crop], (z, z, 1), order=1)
            trim = (zoomed.shape[0] - 32) // 2
            total += zoomed[trim:trim + 32, trim:trim + 32]
        expected.append(np.clip((image + total) / (len(zooms) + 1), 0, 1))
    mine = ZoomBlur()(images, severity, BatchRNG(sample_seeds(0, torch.arange(4))))
    assert np.abs(mine.permute(0, 2, 3, 1).numpy() - np.stack(expected)).max() < 1e-5


@pytest.mark.parametrize(("severity", "factor"), list(zip(SEVERITIES, (0.95, 0.9, 0.85, 0.75, 0.65))))
def test_cifar_pixelate_is_pillow_box_down_and_up(severity: int, factor: float) -> None:
    images = real_images(8, 32)
    expected = [np.array(Image.fromarray(im).resize((int(32 * factor),) * 2, Image.BOX).resize((32, 32), Image.BOX))
                for im in to_uint8_hwc(images)]
    mine = REGISTRY.get("distortion", "pixelate")()(images, severity, BatchRNG(sample_seeds(0, torch.arange(8))))
    assert torch.equal((mine * 255).round().to(torch.uint8).permute(0, 2, 3, 1), torch.from_numpy(np.stack(expected)))


def test_frost_texture_pins_its_own_statistics() -> None:
    """Frost departs from the reference (procedural texture): pin brightness and contrast ranges
    measured on the reference's frost photographs (crop means 0.45-0.8, crop std 0.06-0.16)."""
    from robench_plugins.distortions.weather import frost_texture

    texture = frost_texture(BatchRNG(sample_seeds(0, torch.arange(64))), 32, 32)
    means, stds = texture.mean((1, 2, 3)), texture.std((1, 2, 3))
    assert 0.35 <= float(means.min()) and float(means.max()) <= 0.85
    assert 0.04 <= float(stds.median()) <= 0.2
    channel = texture.mean((0, 2, 3))
    assert channel[0] < channel[1] < channel[2]  # blue-white, as the photographs


def test_fractals_drawn_together_equal_successive_fractals() -> None:
    from robench_plugins.distortions._fractal import plasma_fractals

    seeds = sample_seeds(1, torch.arange(3))
    together, apart = BatchRNG(seeds), BatchRNG(seeds)
    maps = plasma_fractals(together, 64, 1.6, 1.4)
    assert maps.shape == (3, 2, 64, 64)
    assert torch.equal(maps[:, 0], plasma_fractal(apart, 64, 1.6))
    assert torch.equal(maps[:, 1], plasma_fractal(apart, 64, 1.4))
