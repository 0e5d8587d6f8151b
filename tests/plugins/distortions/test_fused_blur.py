"""The Gaussian blur's fused GPU kernels: the C kernel's direct sums, in its order."""

from __future__ import annotations

import pytest
import torch

from triton_interpreter import run_interpreted


def test_the_fused_blur_equals_the_c_kernel_in_tritons_interpreter() -> None:
    pytest.importorskip("robench.native")
    from robench import native

    if not native.available(torch.device("cpu")):
        pytest.skip("no C compiler: nothing to compare with")
    run_interpreted("""
        import torch
        from robench_plugins.distortions import _filters

        _filters._BLUR_KERNEL.available = lambda device: True
        cap, _filters._FUSED_BLUR_MAX_RADIUS = _filters._FUSED_BLUR_MAX_RADIUS, 64  # the kernel at any radius
        generator = torch.Generator().manual_seed(0)
        # sizes below and above the radius (borders that fold more than once), one sigma or a
        # choice per image (vertical and horizontal differing), every border mode, both dtypes
        cases = (((3, 2, 19, 23), (0.7,), None), ((4, 3, 30, 28), (1.0, (2.5, 0.8), 4.0), torch.tensor([2, 0, 1, 1])),
                 ((2, 1, 5, 7), ((3.0, 1.5),), None))
        for shape, sigmas, which in cases:
            for dtype in (torch.float32, torch.float64):
                images = torch.rand(shape, generator=generator, dtype=dtype)
                for mode in ("replicate", "reflect101", "symmetric"):
                    fused = _filters._fused_blur(images, sigmas, which, mode, 4.0)
                    assert fused is not None and not _filters._BLUR_KERNEL.failed
                    in_c = _filters._native_blur(images, sigmas, which, mode, 4.0)
                    assert torch.equal(fused, in_c), (shape, sigmas, dtype, mode)
        # the dispatch takes it where the CPU takes C (and not below), for radii up to the cap
        _filters._FUSED_BLUR_MAX_RADIUS = cap
        _filters._in_c = lambda images: False
        images = torch.rand(2, 3, 8, 130, generator=generator)
        c = _filters._native_blur(images.reshape(-1, 8, 130), (1.5,), None, "replicate", 4.0).view_as(images)
        assert torch.equal(_filters.gaussian_blur(images, 1.5), c)
        small = torch.rand(2, 3, 8, 20, generator=generator)
        assert not _filters._fused(small)
        assert _filters._fused_blur(images, (2.0,), None, "replicate", 4.0) is None  # 8 taps each side: matrices
        print("fused blur matches")
    """, "fused blur matches")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_gpu_blurs_as_the_cpu_from_128_px(dtype: torch.dtype) -> None:
    """Bit for bit: the same sums in the same order on both devices."""
    from robench_plugins.distortions import _filters

    images = torch.rand(4, 3, 150, 224, generator=torch.Generator().manual_seed(1), dtype=dtype)
    which = torch.tensor([0, 2, 1, 2])
    sigmas = (0.7, (1.5, 0.8), 1.2)  # radii 3, (6, 3), 5: within _FUSED_BLUR_MAX_RADIUS
    for mode in ("replicate", "symmetric"):
        on_gpu = _filters.gaussian_blur_each(images.cuda(), sigmas, which.cuda(), mode)
        assert _filters._BLUR_KERNEL.available(torch.device("cuda")), "the fused blur failed on the GPU"
        assert torch.equal(on_gpu.cpu(), _filters.gaussian_blur_each(images, sigmas, which, mode))
    assert torch.equal(_filters.gaussian_blur(images.cuda(), 1.5).cpu(), _filters.gaussian_blur(images, 1.5))
