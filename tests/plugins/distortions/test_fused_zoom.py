"""zoom_blur's fused kernel (every zoom of a pixel in registers) against the torch path."""

from __future__ import annotations

import pytest
import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds

from triton_interpreter import run_interpreted


def test_the_fused_zoom_matches_the_torch_path_in_tritons_interpreter() -> None:
    # The interpreter rounds a product before adding it where a GPU's fma rounds once, so the
    # two agree to float rounding here; exactly only on hardware (the CUDA test below).
    run_interpreted("""
        import torch
        from robench_plugins.distortions import blur

        images = torch.rand(3, 2, 23, 21, generator=torch.Generator().manual_seed(0))
        for factors, centre_trim in (((1.0, 1.04, 1.13, 1.3), True), ((1.0, 1.02, 1.11, 1.29), False)):
            for uses in (None, (torch.arange(12).view(3, 4) % 3 == 0).float()):  # (images, factors)
                blur._ZOOM_KERNEL.available = lambda device: True
                fused = blur.zoom_total(images, factors, centre_trim, uses)
                assert not blur._ZOOM_KERNEL.failed
                blur._ZOOM_KERNEL.available = lambda device: False
                plain = blur.zoom_total(images, factors, centre_trim, uses)
                assert float((fused - plain).abs().max()) <= 1e-6, (factors, uses)
                assert float((fused - plain).abs().max()) < float((plain - images).abs().max()) / 1000
        print("fused zoom matches")
    """, "fused zoom matches")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("size", [32, 224])
def test_zoom_blur_on_the_gpu_matches_the_cpu(size: int) -> None:
    from robench_plugins.distortions import blur

    zoom = Registry(entry_points=False).get("distortion", "zoom_blur")()
    images = torch.rand(6, 3, size, size, generator=torch.Generator().manual_seed(size))
    seeds = sample_seeds(2, torch.arange(6))
    severities = torch.tensor([1, 2, 3, 4, 5, 3])
    for severity in (1, 5):
        on_gpu = zoom(images.cuda(), severity, BatchRNG(seeds.cuda())).cpu()
        assert blur._ZOOM_KERNEL.available(torch.device("cuda")), "the fused kernel failed on the GPU"
        assert float((on_gpu - zoom(images, severity, BatchRNG(seeds))).abs().max()) <= 1e-6
    on_gpu = zoom.call_mixed(images.cuda(), severities, BatchRNG(seeds.cuda())).cpu()
    assert float((on_gpu - zoom.call_mixed(images, severities, BatchRNG(seeds))).abs().max()) <= 1e-6
