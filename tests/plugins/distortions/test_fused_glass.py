"""glass_blur's fused copies kernel (each pixel walks its chain) equals the pointer-doubling path."""

from __future__ import annotations

import pytest
import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds

from triton_interpreter import run_interpreted


def test_the_fused_copies_equal_the_torch_path_in_tritons_interpreter() -> None:
    run_interpreted("""
        import torch
        from robench.rng import BatchRNG, sample_seeds
        from robench_plugins.distortions import _glass

        seeds = sample_seeds(4, torch.arange(3))
        images = torch.rand(3, 3, 17, 19, generator=torch.Generator().manual_seed(0))
        for shift in (1, 2, 3, 4):
            for each in (None, torch.tensor([2.0, 0.0, 1.0])):  # per-image iteration counts
                _glass._COPIES_KERNEL.available = lambda device: True
                fused = _glass.local_copies(images, shift, 2, BatchRNG(seeds), each)
                assert not _glass._COPIES_KERNEL.failed
                _glass._COPIES_KERNEL.available = lambda device: False
                plain = _glass.local_copies(images, shift, 2, BatchRNG(seeds), each)
                assert torch.equal(fused, plain), (shift, each)
                assert not torch.equal(fused, images)
        print("fused copies exact")
    """, "fused copies exact")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("size", [32, 224])
def test_glass_blur_on_the_gpu_equals_the_cpu(size: int) -> None:
    from robench_plugins.distortions import _filters, _glass

    glass = Registry(entry_points=False).get("distortion", "glass_blur")()
    images = torch.rand(6, 3, size, size, generator=torch.Generator().manual_seed(size))
    seeds = sample_seeds(2, torch.arange(6))
    severities = torch.tensor([1, 2, 3, 4, 5, 3])
    on_gpu = glass.call_mixed(images.cuda(), severities, BatchRNG(seeds.cuda())).cpu()
    assert _glass._COPIES_KERNEL.available(torch.device("cuda")), "the fused kernel failed on the GPU"
    assert _filters._BLUR_KERNEL.available(torch.device("cuda")), "the fused blur failed on the GPU"
    on_cpu = glass.call_mixed(images, severities, BatchRNG(seeds))
    # From 128 px both devices blur by the same direct sums in the same order (the CPU in C, the GPU
    # in Triton), below both by matrix products, whose float rounding may differ by device (as for
    # every filter); the copies must not. (The first blur is cut to uint8 levels: different
    # blurs there would show as a level at a few pixels, as stop 16's C blur against the GPU's
    # matrices did at 224 px until the GPU summed as the C kernel does.)
    assert float((on_gpu - on_cpu).abs().max()) < 1e-5
