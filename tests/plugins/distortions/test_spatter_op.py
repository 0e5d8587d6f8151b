"""The batched ``spatter`` corruption (Hendrycks & Dietterich, 2019, ICLR) against the reference,
imagecorruptions 1.1.2, on real images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions._spatter import SPATTER_TABLES, spatter

from reference import psnr, real_images, reference

IMAGENET = SPATTER_TABLES["imagenet-c"]
CIFAR = SPATTER_TABLES["cifar-10-c"]
SEEDS = (0, 1, 2, 3)
# |mean PSNR ours - reference| per severity (24 images x 4 seeds, independent noise): about three
# standard deviations of that difference, measured over 10 disjoint seed sets (0.40, 0.37, 0.15,
# 0.16, 0.09 dB; its mean over them was within 0.04 dB at every severity). Few, large droplets make
# severities 1-2 noisy at 64 px.
PSNR_TOLERANCE_DB = (1.2, 1.1, 0.5, 0.5, 0.3)


def _spatter(images: torch.Tensor, params: tuple, seed: int) -> torch.Tensor:
    return spatter(images, params, BatchRNG(sample_seeds(seed, torch.arange(images.shape[0]))))


@pytest.fixture(scope="module")
def images64() -> torch.Tensor:
    return real_images(24, 64)


@pytest.fixture(scope="module")
def runs(images64: torch.Tensor) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Per severity of the 224-px table: (ours, reference, clean), each over all seeds."""
    clean = images64.repeat(len(SEEDS), 1, 1, 1)
    out = {}
    for severity, params in enumerate(IMAGENET, start=1):
        ours = torch.cat([_spatter(images64, params, seed) for seed in SEEDS])
        ref = torch.cat([reference("spatter", images64, severity, seed) for seed in SEEDS])
        out[severity] = (ours, ref, clean)
    return out


@pytest.mark.parametrize("severity", range(1, 6))
def test_mean_psnr_matches_reference(runs: dict, severity: int) -> None:
    # Achieved (ours / reference, dB): 28.63/28.72, 23.63/23.39, 22.05/22.10, 18.77/18.71, 16.63/16.64.
    ours, ref, clean = runs[severity]
    gap = psnr(ours, clean).mean() - psnr(ref, clean).mean()
    assert abs(gap) < PSNR_TOLERANCE_DB[severity - 1]


@pytest.mark.parametrize("severity", range(1, 6))
def test_colour_shift_matches_reference(runs: dict, severity: int) -> None:
    # Water brightens all channels, red least (pale turquoise); mud darkens, blue most.
    ours, ref, clean = runs[severity]
    shift, ref_shift = (ours - clean).mean((0, 2, 3)), (ref - clean).mean((0, 2, 3))
    assert torch.equal(shift.sign(), ref_shift.sign())
    assert torch.equal(shift.argmin(), ref_shift.argmin())
    assert torch.allclose(shift, ref_shift, rtol=0.25, atol=2e-3)


@pytest.mark.parametrize("severity", range(1, 6))
def test_same_noise_gives_the_reference_pixels(
    images64: torch.Tensor, severity: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fed our noise field, the reference's output is ours up to its uint8 truncation."""
    params = IMAGENET[severity - 1]
    seeds = sample_seeds(7, torch.arange(images64.shape[0]))
    fields = iter(BatchRNG(seeds).normal(64, 64).double().numpy())
    monkeypatch.setattr(np.random, "normal", lambda loc=0.0, scale=1.0, size=None: loc + scale * next(fields))
    ref = reference("spatter", images64, severity)
    ours = spatter(images64, params, BatchRNG(seeds))
    levels = (ours - ref) * 255  # the reference truncates: in [0, 1) when identical
    assert levels.min() > -0.01 and levels.max() < 1.01


def test_output_contract_and_determinism() -> None:
    images = real_images(6, 48)
    for params in (IMAGENET[2], IMAGENET[4], CIFAR[0], CIFAR[3]):
        out = _spatter(images, params, seed=5)
        assert out.shape == images.shape and out.dtype == torch.float32
        assert out.min() >= 0 and out.max() <= 1
        assert torch.equal(out, _spatter(images, params, seed=5))
        assert not torch.equal(out, _spatter(images, params, seed=6))


def test_sample_independent_of_batch() -> None:
    images = real_images(5, 40)
    seeds = sample_seeds(3, torch.arange(5))
    for params in (IMAGENET[1], IMAGENET[3]):
        batch = spatter(images, params, BatchRNG(seeds))
        alone = spatter(images[2:3], params, BatchRNG(seeds[2:3]))
        assert torch.equal(batch[2:3], alone)
        swapped = spatter(images.flip(0), params, BatchRNG(seeds.flip(0)))
        assert torch.equal(swapped.flip(0), batch)


def test_water_colour_order_and_dry_images() -> None:
    black = torch.zeros(4, 3, 64, 64)
    out = _spatter(black, IMAGENET[2], seed=1)
    # On black nothing clips: the colour is added as R, G, B = 175, 238, 238 (pale turquoise).
    assert torch.allclose(out[:, 0] * 238, out[:, 1] * 175, atol=1e-5)
    assert torch.equal(out[:, 1], out[:, 2]) and out.amax() > 0
    images = real_images(4, 32)
    dry = (0.65, 0.3, 2, 5.0, 0.5, 0)  # threshold above any field value: nothing to spatter
    assert torch.equal(_spatter(images, dry, seed=0), images)


def test_cifar_table_damage_grows_with_severity() -> None:
    images = real_images(60, 32)
    clean = images.repeat(2, 1, 1, 1)
    mse, mean_psnr = [], []
    for params in CIFAR:
        out = torch.cat([_spatter(images, params, seed) for seed in (0, 1)])
        mse.append((out - clean).pow(2).mean().item())
        mean_psnr.append(psnr(out, clean).mean().item())
    assert mse[0] <= mse[1] <= mse[2]  # water
    assert mse[3] <= mse[4]  # mud
    # Pinned to this implementation, to notice changes.
    assert mean_psnr[2] == pytest.approx(22.655, abs=0.5)
    assert mean_psnr[4] == pytest.approx(22.292, abs=0.5)


def test_canny_is_opencv_canny() -> None:
    import cv2

    from robench_plugins.distortions._spatter import _canny

    generator = torch.Generator().manual_seed(0)
    noise = torch.rand(6, 1, 40, 52, generator=generator)
    # smooth random fields give long, winding weak edges between the two thresholds
    levels = torch.nn.functional.avg_pool2d(noise * 255, 5, stride=1, padding=2).floor()
    ours = _canny(levels, 50, 150)
    for image, mask in zip(levels[:, 0].numpy().astype(np.uint8), ours[:, 0]):
        assert torch.equal(mask, torch.from_numpy(cv2.Canny(image, 50, 150) > 0))


def test_truncated_distance_is_opencv_distance_transform() -> None:
    """Bit for bit cv2.distanceTransform(DIST_L2, 5) truncated at 20, on sparse and dense edges,
    edges on the borders, a single edge pixel and none; the C kernel's two raster passes are
    compared with this path in tests/test_native.py."""
    import cv2

    from robench_plugins.distortions._spatter import _truncated_distance

    generator = torch.Generator().manual_seed(3)
    h, w = 57, 83
    sparse = torch.rand(3, 1, h, w, generator=generator) > 0.995
    dense = torch.rand(3, 1, h, w, generator=generator) > 0.8
    border = torch.zeros(1, 1, h, w, dtype=torch.bool)
    border[..., 0, :] = border[..., :, -1] = True
    single = torch.zeros(1, 1, h, w, dtype=torch.bool)
    single[..., h // 2, 5] = True
    empty = torch.zeros(1, 1, h, w, dtype=torch.bool)
    edges = torch.cat([sparse, dense, border, single, empty])
    ours = _truncated_distance(edges)
    for mask, distance in zip(edges[:, 0].numpy(), ours[:, 0]):
        expected = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
        assert torch.equal(distance, torch.from_numpy(np.minimum(expected, 20.0)))


@pytest.mark.parametrize("rounds_per_check", [1, 8])
def test_hysteresis_follows_weak_chains_of_any_length(rounds_per_check: int) -> None:
    from scipy import ndimage

    from robench_plugins.distortions._spatter import _hysteresis

    weak = torch.zeros(2, 1, 30, 30, dtype=torch.bool)
    weak[0, 0, 0:25:4, 1:-1] = True  # a serpentine of 7 rows joined at alternate ends: 200+ pixels long
    for row in range(0, 24, 4):
        weak[0, 0, row + 1 : row + 4, 28 if row % 8 == 0 else 1] = True
    weak[1] = torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(1)) < 0.5
    strong = torch.zeros_like(weak)
    strong[0, 0, 24, 2] = True  # the serpentine's far end
    strong[1, 0, 15, 15] = weak[1, 0, 15, 15] = True
    out = _hysteresis(strong, weak, rounds_per_check)
    for i in range(2):
        labels, _ = ndimage.label(weak[i, 0].numpy(), structure=np.ones((3, 3)))
        kept = np.isin(labels, np.unique(labels[strong[i, 0].numpy()])) & (labels > 0)
        assert torch.equal(out[i, 0], torch.from_numpy(kept))
    assert torch.equal(out[0], weak[0])  # the whole serpentine, reached from its far end
