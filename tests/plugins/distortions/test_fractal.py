"""The plasma fractal's fused kernel (one per scale) gives the torch path's float64 maps exactly."""

from __future__ import annotations

import pytest
import torch

from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions import _fractal

from triton_interpreter import run_interpreted

SCRIPT = """
    import torch
    from robench.rng import BatchRNG, sample_seeds
    from robench_plugins.distortions import _fractal

    seeds = sample_seeds(4, torch.arange(3))
    decays = torch.tensor([1.5, 2.0, 1.5], dtype=torch.float64)  # one per sample, and a number
    for mapsize in (2, 8, 32):
        _fractal._KERNEL.available = lambda device: True
        fused = _fractal.plasma_fractals(BatchRNG(seeds), mapsize, 1.7, decays)
        assert not _fractal._KERNEL.failed
        _fractal._KERNEL.available = lambda device: False
        plain = _fractal.plasma_fractals(BatchRNG(seeds), mapsize, 1.7, decays)
        assert torch.equal(fused, plain), (mapsize, (fused - plain).abs().max())
        # and the float64 grid before normalisation, bit for bit (random draws of a wide range)
        noise = torch.randn(5, sum(_fractal._draw_sizes(mapsize)), dtype=torch.float64) * 100
        grids = [torch.zeros(5, mapsize, mapsize, dtype=torch.float64) for _ in range(2)]
        assert _fractal._fused_scales(grids[0], noise)
        _fractal._scales(grids[1], noise, _fractal._draw_sizes(mapsize))
        assert torch.equal(grids[0], grids[1]), mapsize
    print("fused fractal exact")
"""


def test_the_fused_fractal_equals_the_torch_path_in_tritons_interpreter() -> None:
    run_interpreted(SCRIPT, "fused fractal exact")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_fractal_on_the_gpu_equals_the_cpus() -> None:
    seeds = sample_seeds(9, torch.arange(64))
    decays = (torch.arange(64) % 3 + 1.5).to(torch.float64)
    on_gpu = _fractal.plasma_fractals(BatchRNG(seeds.cuda()), 256, 2.0, decays)
    assert _fractal._KERNEL.available(torch.device("cuda")), "the fused kernel failed on the GPU"
    on_cpu = _fractal.plasma_fractals(BatchRNG(seeds), 256, 2.0, decays)
    assert torch.equal(on_gpu.cpu(), on_cpu)
