"""The fused (Triton) random draws give exactly the torch path's values, and fall back cleanly."""

from __future__ import annotations

import inspect
import logging
import textwrap

import pytest
import torch

from robench import fused, rng_fused
from robench.rng import BatchRNG, sample_seeds

from triton_interpreter import run_interpreted


def draws(rng: BatchRNG) -> list[torch.Tensor]:
    """Every kind of draw, odd sizes, counters past 2^16 (the subprocess below runs it too)."""
    return [rng.bits(5, 7), rng.uniform(3, 11), rng.normal(13), rng.normal(4, 4), rng.normal(1),
            rng.uniform_streams(3, 5, 0, 1), rng.integers(0, 10, 9), rng.bits(70_001)]


def _same(fused: list[torch.Tensor], plain: list[torch.Tensor]) -> None:
    assert len(fused) == len(plain)
    for a, b in zip(fused, plain):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a.cpu(), b.cpu())


def test_fused_draws_equal_the_torch_path_in_tritons_interpreter() -> None:
    script = textwrap.dedent("""
        from __future__ import annotations

        import os

        import torch
        from robench import rng_fused
        from robench.rng import BatchRNG, sample_seeds

    """) + inspect.getsource(draws) + textwrap.dedent("""
        seeds = sample_seeds(7, torch.arange(3))
        rng_fused.available = lambda device: True
        fused = draws(BatchRNG(seeds))
        assert not rng_fused.KERNEL.failed
        rng_fused.available = lambda device: False
        os.environ["ROBENCH_FUSED"] = "0"  # the torch path, not the CPU's C kernel
        plain = draws(BatchRNG(seeds))
        for a, b in zip(fused, plain):
            assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, b.dtype, a.shape, b.shape)
            assert torch.equal(a, b), (a, b)
        print("equal", len(fused))
    """)
    run_interpreted(script, "equal 8")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fused_draws_on_the_gpu_equal_the_cpus() -> None:
    pytest.importorskip("triton")
    seeds = sample_seeds(11, torch.arange(256))
    assert rng_fused.available(torch.device("cuda"))
    on_gpu = draws(BatchRNG(seeds.cuda())) + [BatchRNG(seeds.cuda()).normal(3, 224, 224)]
    assert not rng_fused.KERNEL.failed
    on_cpu = draws(BatchRNG(seeds)) + [BatchRNG(seeds).normal(3, 224, 224)]
    _same(on_gpu, on_cpu)


def test_the_cpu_and_the_switch_take_the_torch_path(monkeypatch) -> None:
    assert not rng_fused.available(torch.device("cpu"))
    monkeypatch.setenv("ROBENCH_FUSED", "0")
    assert not rng_fused.available(torch.device("cuda"))


def test_a_failing_kernel_falls_back_to_the_torch_path_with_one_warning(monkeypatch, caplog) -> None:
    seeds = sample_seeds(3, torch.arange(4))
    plain = draws(BatchRNG(seeds))

    class Broken:
        def __getitem__(self, grid):
            def launch(*args, **kwargs):
                raise RuntimeError("no compiler here")
            return launch

    monkeypatch.setattr(fused, "triton", fused.triton or type("T", (), {"cdiv": staticmethod(
        lambda a, b: -(-a // b))}))
    monkeypatch.setattr(rng_fused, "_draw_kernel", Broken(), raising=False)
    monkeypatch.setattr(rng_fused, "KERNEL", fused.FusedKernel("random draws"))
    monkeypatch.setattr(rng_fused, "available", lambda device: not rng_fused.KERNEL.failed)
    with caplog.at_level(logging.WARNING, logger="robench.fused"):
        fallback = draws(BatchRNG(seeds))
    _same(fallback, plain)
    assert rng_fused.KERNEL.failed
    warnings = [r for r in caplog.records if "fused random draws unavailable" in r.getMessage()]
    assert len(warnings) == 1 and "no compiler here" in warnings[0].getMessage()
