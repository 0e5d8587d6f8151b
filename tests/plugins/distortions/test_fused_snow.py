"""snow's fused blend kernel against the torch path."""

from __future__ import annotations

import pytest
import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds

from triton_interpreter import run_interpreted


def test_the_fused_snow_blend_equals_the_torch_path_in_tritons_interpreter() -> None:
    run_interpreted("""
        import torch
        from robench import native
        from robench.registry import Registry
        from robench.rng import BatchRNG, sample_seeds
        from robench_plugins.distortions import weather

        native.takes = lambda *tensors: False  # the torch path, as on a GPU
        snow = Registry(entry_points=False).get("distortion", "snow")()
        seeds = sample_seeds(3, torch.arange(5))
        severities = torch.tensor([1, 2, 3, 4, 5])
        for size in ((33, 41), (100, 104)):  # both tables
            images = torch.rand(5, 3, *size, generator=torch.Generator().manual_seed(size[0]))
            weather._SNOW_BLEND.available = lambda device: True
            fused = snow.call_mixed(images, severities, BatchRNG(seeds))
            assert not weather._SNOW_BLEND.failed
            weather._SNOW_BLEND.available = lambda device: False
            plain = snow.call_mixed(images, severities, BatchRNG(seeds))
            assert torch.equal(fused, plain), size
            assert fused.min() == 0 or fused.max() == 1  # the clamp is exercised
        print("fused snow matches")
    """, "fused snow matches")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_fused_snow_blend_runs_on_the_gpu() -> None:
    """Its output equals the torch path's on the GPU (the CPU's differs by a uint8 level of the
    snow layer at a few pixels: README)."""
    from robench_plugins.distortions import weather

    snow = Registry(entry_points=False).get("distortion", "snow")()
    images = torch.rand(6, 3, 224, 224, generator=torch.Generator().manual_seed(0)).cuda()
    seeds = sample_seeds(2, torch.arange(6)).cuda()
    severities = torch.tensor([1, 2, 3, 4, 5, 3])
    fused = snow.call_mixed(images, severities, BatchRNG(seeds))
    assert weather._SNOW_BLEND.available(images.device), "the kernel failed on the GPU"
    weather._SNOW_BLEND.available = lambda device: False
    try:
        plain = snow.call_mixed(images, severities, BatchRNG(seeds))
    finally:
        del weather._SNOW_BLEND.available
    assert torch.equal(fused, plain)
