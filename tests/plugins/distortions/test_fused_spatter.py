"""spatter's fused GPU kernels (Canny, hysteresis, distance) against OpenCV and the torch path."""

from __future__ import annotations

import pytest
import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds

from triton_interpreter import run_interpreted


def test_the_fused_water_steps_match_opencv_and_the_torch_path_in_tritons_interpreter() -> None:
    run_interpreted("""
        import cv2
        import numpy as np
        import torch
        from scipy import ndimage
        from robench import native
        from robench_plugins.distortions import _spatter, _spatter_fused as fused

        kernels = (fused.CANNY, fused.HYSTERESIS, fused.DISTANCE, fused.FINISH)

        def use_kernels(on):
            for kernel in kernels:
                kernel.available = lambda device: on

        use_kernels(True)
        # smooth random fields: long, winding weak edges between the two thresholds
        noise = torch.rand(2, 1, 32, 44, generator=torch.Generator().manual_seed(0))
        levels = torch.nn.functional.avg_pool2d(noise * 255, 5, stride=1, padding=2).floor()
        codes = fused.canny_codes(levels, 50, 150)
        assert int((codes == 1).sum()) > 100, "the test needs weak pixels"
        edges = fused.hysteresis(codes)
        for image, mask in zip(levels[:, 0].numpy().astype(np.uint8), edges[:, 0]):
            assert torch.equal(mask, torch.from_numpy(cv2.Canny(image, 50, 150) > 0))

        # a serpentine weak chain 200+ pixels long, reached from its far end, and random weak pixels
        weak = torch.zeros(2, 1, 30, 30, dtype=torch.bool)
        weak[0, 0, 0:25:4, 1:-1] = True
        for row in range(0, 24, 4):
            weak[0, 0, row + 1 : row + 4, 28 if row % 8 == 0 else 1] = True
        weak[1] = torch.rand(1, 30, 30, generator=torch.Generator().manual_seed(1)) < 0.5
        strong = torch.zeros_like(weak)
        strong[0, 0, 24, 2] = True
        strong[1, 0, 15, 15] = weak[1, 0, 15, 15] = True
        grown = fused.hysteresis(weak.to(torch.int8) + strong.to(torch.int8))
        for i in range(2):
            labels, _ = ndimage.label(weak[i, 0].numpy(), structure=np.ones((3, 3)))
            kept = np.isin(labels, np.unique(labels[strong[i, 0].numpy()])) & (labels > 0)
            assert torch.equal(grown[i, 0], torch.from_numpy(kept)), i
        assert torch.equal(grown[0], weak[0])

        # the distance: sparse and dense edges, the borders, one pixel, none; 23 rows: fewer than
        # the 41 within reach, so rows outside the image are skipped at both ends of a column
        generator = torch.Generator().manual_seed(3)
        h, w = 23, 53
        border = torch.zeros(1, 1, h, w, dtype=torch.bool)
        border[..., 0, :] = border[..., :, -1] = True
        single = torch.zeros(1, 1, h, w, dtype=torch.bool)
        single[..., h // 2, 5] = True
        masks = torch.cat([torch.rand(1, 1, h, w, generator=generator) > 0.99,
                           torch.rand(1, 1, h, w, generator=generator) > 0.8,
                           border, single, torch.zeros(1, 1, h, w, dtype=torch.bool)])
        distance = fused.truncated_distance(masks, _spatter._chamfer_pairs(torch.device("cpu")))
        for mask, ours in zip(masks[:, 0].numpy(), distance[:, 0]):
            expected = cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, 5)
            assert torch.equal(ours, torch.from_numpy(np.minimum(expected, 20.0)))

        # equalisation tables: ties to even (512 pixels, 2 at the lowest level: a scale of exactly
        # 0.5, so odd counts above the lowest level fall halfway), an image of one level, a random one
        torch.manual_seed(0)
        counts = torch.zeros(3, 32, dtype=torch.int32)
        counts[0, :6] = torch.tensor([2, 1, 2, 7, 0, 500])
        counts[1, 20] = 512
        counts[2, :21] = torch.distributions.Multinomial(512, torch.rand(21)).sample().int()
        tables = fused.equalisation_tables(counts, 512)
        for row, table in zip(counts, tables):
            levels = torch.repeat_interleave(torch.arange(32), row.long()).float().view(1, 1, 16, 32)
            equalised = _spatter._equalize_hist(levels, 20)
            assert torch.equal(table[levels.long()], equalised)
        assert tables[0, 1] == 0 and tables[0, 2] == 2 and tables[1, 20] == 20

        # the whole water step through the kernels equals the C path's (as the CPU runs it): droplets,
        # a dry image (no liquid: left as it is), liquid everywhere (no edges, one level of distance),
        # an intensity per image (one for all, a float: the CUDA test's single severities)
        images = torch.rand(4, 3, 26, 30, generator=torch.Generator().manual_seed(4))
        field = torch.randn(4, 1, 26, 30, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
        layer = _spatter.gaussian_blur(field * 0.3 + 0.65, 1.5)
        layer[2], layer[3] = 0.2, 0.9
        intensity = torch.tensor([0.5, 0.6, 1.5, 0.55]).view(4, 1, 1, 1)
        native.takes = lambda *tensors: True
        in_c = _spatter._water(images, layer, 0.66, intensity)
        native.takes = lambda *tensors: False
        through_kernels = _spatter._water(images, layer, 0.66, intensity)
        assert not any(kernel.failed for kernel in kernels)
        assert torch.equal(through_kernels, in_c)
        assert not torch.equal(in_c[:2], images[:2]) and torch.equal(in_c[2], images[2])
        assert not torch.equal(in_c[3], images[3])
        print("fused spatter matches")
    """, "fused spatter matches")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("size", [32, 224])
def test_spatter_on_the_gpu_matches_the_cpu(size: int) -> None:
    """Pixel for pixel, through the fused kernels (that it never waits for the device:
    test_device_sync.py)."""
    from robench_plugins.distortions import _spatter_fused as fused

    spatter = Registry(entry_points=False).get("distortion", "spatter")()
    images = torch.rand(8, 3, size, size, generator=torch.Generator().manual_seed(size))
    seeds = sample_seeds(7, torch.arange(8))
    severities = torch.tensor([1, 2, 3, 4, 5, 3, 2, 1])
    for severity in (1, 2, 3):  # the water severities of both tables
        on_gpu = spatter(images.cuda(), severity, BatchRNG(seeds.cuda())).cpu()
        assert not any(k.failed for k in (fused.CANNY, fused.HYSTERESIS, fused.DISTANCE, fused.FINISH)), "a kernel failed"
        assert torch.equal(on_gpu, spatter(images, severity, BatchRNG(seeds))), severity
    on_gpu = spatter.call_mixed(images.cuda(), severities, BatchRNG(seeds.cuda())).cpu()
    assert torch.equal(on_gpu, spatter.call_mixed(images, severities, BatchRNG(seeds)))
