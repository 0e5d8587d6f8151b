"""The batched JPEG round trip against Pillow's encoder and decoder, on real images."""

from __future__ import annotations

import functools
import io

import numpy as np
import PIL.features
import pytest
import torch
from PIL import Image

from robench_plugins.distortions._jpeg import jpeg_roundtrip

from reference import psnr, real_images, to_uint8_hwc

IMAGENET_C = (7, 10, 15, 18, 25)  # ImageNet-C's JPEG qualities, severities 1-5
CIFAR_C = (80, 65, 58, 50, 40)  # CIFAR-10-C's
# Measured on libjpeg-turbo (Pillow 13 wheels): every output value equals Pillow's, at all
# sizes and qualities. The tolerances only leave room for another libjpeg build.
MAX_MEAN_ABS_LEVELS = 0.02
MAX_PSNR_GAP_DB = 0.02


@functools.cache
def batch(name: str) -> torch.Tensor:
    """Real CIFAR-10 test images: 8 at 32 px, 4 upsampled to 224 px, 4 cropped to 45x37."""
    if name == "32":
        return real_images(8, 32)
    if name == "224":
        return real_images(4, 224)
    return real_images(4, 64)[..., 5:50, 11:48].contiguous()


def pillow_roundtrip(images: torch.Tensor, quality: int) -> torch.Tensor:
    """``Image.save(..., "JPEG", quality=q)`` then ``Image.open`` for each image."""
    out = []
    for array in to_uint8_hwc(images):
        buffer = io.BytesIO()
        Image.fromarray(array).save(buffer, "JPEG", quality=quality)
        buffer.seek(0)
        out.append(np.asarray(Image.open(buffer).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


@pytest.mark.parametrize("quality", IMAGENET_C + CIFAR_C)
@pytest.mark.parametrize("name", ["32", "224", "45x37"])
def test_matches_pillow(name: str, quality: int) -> None:
    images = batch(name)
    ours, theirs = jpeg_roundtrip(images, quality), pillow_roundtrip(images, quality)
    assert ours.shape == images.shape and ours.dtype == images.dtype
    assert (ours - theirs).abs().mul(255).mean() <= MAX_MEAN_ABS_LEVELS
    gap = psnr(ours, images) - psnr(theirs, images)
    assert gap.abs().max() <= MAX_PSNR_GAP_DB


ODD_SIZES = [(1, 1), (2, 3), (4, 4), (5, 6), (7, 9), (9, 17), (16, 16), (17, 33), (33, 18)]
LIBJPEG_TURBO = PIL.features.check_feature("libjpeg_turbo")


@pytest.mark.skipif(not LIBJPEG_TURBO, reason="Pillow without libjpeg-turbo")
@pytest.mark.parametrize("size", ODD_SIZES)
def test_bit_exact_with_libjpeg_turbo(size: tuple[int, int]) -> None:
    """Odd sizes exercise partial-MCU padding and the narrow-plane upsampling fallback."""
    h, w = size
    images = real_images(2, 64)[..., 3 : 3 + h, 7 : 7 + w]
    for quality in (7, 50, 95):
        assert torch.equal(jpeg_roundtrip(images, quality), pillow_roundtrip(images, quality))


@pytest.mark.skipif(not LIBJPEG_TURBO, reason="Pillow without libjpeg-turbo")
def test_uniform_noise_bit_exact() -> None:
    """Noise drives coefficients and IDCT overshoot to their extremes."""
    images = torch.rand(2, 3, 24, 40, generator=torch.Generator().manual_seed(0))
    images = images.mul(255).round().div(255)
    for quality in (1, 18, 100):
        assert torch.equal(jpeg_roundtrip(images, quality), pillow_roundtrip(images, quality))


@pytest.mark.skipif(not LIBJPEG_TURBO, reason="Pillow without libjpeg-turbo")
def test_extreme_patterns_bit_exact() -> None:
    """The largest coefficients 8-bit samples give: black, white, one-pixel checkerboards and
    stripes, with the opposite pattern in the middle channel (colour at full swing)."""
    y, x = torch.meshgrid(torch.arange(24), torch.arange(40), indexing="ij")
    patterns = [torch.zeros(24, 40), torch.ones(24, 40), ((y + x) % 2).float(), (x % 2).float(), (y % 2).float(),
                ((y // 8 + x // 8) % 2).float()]
    images = torch.stack([torch.stack([p, 1 - p, p]) for p in patterns])
    for quality in (1, 50, 100):
        assert torch.equal(jpeg_roundtrip(images, quality), pillow_roundtrip(images, quality))


def test_outputs_on_uint8_levels() -> None:
    out = jpeg_roundtrip(torch.rand(2, 3, 20, 13, generator=torch.Generator().manual_seed(1)), 30)
    assert torch.equal(out, (out * 255).round() / 255)
    assert out.min() >= 0 and out.max() <= 1


def test_deterministic_and_batch_independent() -> None:
    images = batch("45x37")
    out = jpeg_roundtrip(images, 18)
    assert torch.equal(out, jpeg_roundtrip(images, 18))
    alone = torch.cat([jpeg_roundtrip(image[None], 18) for image in images])
    assert torch.equal(out, alone)


def test_cpu_chunks_of_the_distortion_change_nothing(cpu_chunks: None) -> None:
    from robench.rng import BatchRNG, sample_seeds
    from robench_plugins.distortions.digital import JpegCompression

    images = batch("224").repeat(4, 1, 1, 1)  # 16 images: three CPU chunks of the Distortion
    whole = JpegCompression()(images, 2, BatchRNG(sample_seeds(0, torch.arange(16))))
    assert torch.equal(whole, jpeg_roundtrip(images, 18))


def test_quality_100_is_nearly_lossless() -> None:
    images = batch("224")
    out = jpeg_roundtrip(images, 100)
    assert psnr(out, images).min() > 45
    assert (out - images).abs().mul(255).mean() < 0.5


@pytest.mark.parametrize("name", ["32", "224"])
def test_lower_quality_is_more_lossy(name: str) -> None:
    images = batch(name)
    quality = [psnr(jpeg_roundtrip(images, q), images).mean().item() for q in IMAGENET_C]
    assert all(a < b for a, b in zip(quality, quality[1:])), quality


def test_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        jpeg_roundtrip(torch.zeros(1, 1, 8, 8), 50)
    with pytest.raises(ValueError):
        jpeg_roundtrip(torch.zeros(1, 3, 8, 8), 101)
    with pytest.raises(ValueError, match="one index per image"):
        jpeg_roundtrip(torch.zeros(3, 3, 8, 8), (10, 20), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="must index the 2 qualities"):
        jpeg_roundtrip(torch.zeros(2, 3, 8, 8), (10, 20), torch.tensor([0, 2]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_equals_cpu() -> None:
    images = torch.cat([batch("224"), batch("224").flip(-1)])
    for quality in (7, 58):
        out = jpeg_roundtrip(images.cuda(), quality)
        assert out.device.type == "cuda"
        assert torch.equal(out.cpu(), jpeg_roundtrip(images, quality))
