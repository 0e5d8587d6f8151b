"""jpeg_compression's fused pixel kernels (colour, subsampling, blocks) against the torch path."""

from __future__ import annotations

import pytest
import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds

from triton_interpreter import run_interpreted


def test_the_fused_pixel_steps_match_the_torch_path_in_tritons_interpreter() -> None:
    run_interpreted("""
        import torch
        from robench import native
        from robench_plugins.distortions import _jpeg_fused as fused
        from robench_plugins.distortions._jpeg import jpeg_roundtrip

        native.takes = lambda *tensors: False  # the torch path, as on a GPU
        generator = torch.Generator().manual_seed(0)
        levels = torch.arange(256.0)
        # sizes with partial blocks and MCUs, odd heights and widths, and chroma planes 1 or 2
        # samples wide (replicated, not filtered); values on uint8 ties and outside [0, 1]
        for shape in ((2, 3, 37, 45), (1, 3, 16, 16), (2, 3, 9, 3), (1, 3, 5, 4), (1, 3, 1, 1), (1, 3, 24, 17)):
            images = torch.rand(shape, generator=generator)
            images.view(-1)[:256] = ((levels + 0.5) / 255).repeat(1 + 256 // images.numel())[: min(256, images.numel())]
            images.view(-1)[-2:] = torch.tensor([-0.2, 1.3])
            which = torch.arange(shape[0]) % 2
            for quality, rows in ((3, None), (60, None), ((20, 95), which)):
                for kernel in (fused.ENCODE, fused.DECODE):
                    kernel.available = lambda device: True
                through_kernels = jpeg_roundtrip(images, quality, rows)
                assert not fused.ENCODE.failed and not fused.DECODE.failed
                for kernel in (fused.ENCODE, fused.DECODE):
                    kernel.available = lambda device: False
                plain = jpeg_roundtrip(images, quality, rows)
                assert torch.equal(through_kernels, plain), (shape, quality)
        print("fused jpeg matches")
    """, "fused jpeg matches")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("size", [32, 224, 37])
def test_jpeg_on_the_gpu_matches_the_cpu(size: int) -> None:
    """Pixel for pixel through the fused kernels, one quality and a mix."""
    from robench_plugins.distortions import _jpeg_fused as fused

    jpeg = Registry(entry_points=False).get("distortion", "jpeg_compression")()
    images = torch.rand(6, 3, size, size + 3, generator=torch.Generator().manual_seed(size))
    seeds = sample_seeds(1, torch.arange(6))
    on_gpu = jpeg(images.cuda(), 4, BatchRNG(seeds.cuda())).cpu()
    assert not fused.ENCODE.failed and not fused.DECODE.failed, "a kernel failed"
    assert torch.equal(on_gpu, jpeg(images, 4, BatchRNG(seeds)))
    severities = torch.tensor([1, 2, 3, 4, 5, 3])
    on_gpu = jpeg.call_mixed(images.cuda(), severities, BatchRNG(seeds.cuda())).cpu()
    assert torch.equal(on_gpu, jpeg.call_mixed(images, severities, BatchRNG(seeds)))
