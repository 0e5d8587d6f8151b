"""On a GPU a distortion (or a method's augmentation) queues its work and returns: it never makes
the host wait for the device (no copy from pageable host memory, no value read back). CUDA only;
the CPU suite skips it."""

from __future__ import annotations

import pytest
import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions import _spatter_fused

REGISTRY = Registry(entry_points=False)

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@pytest.mark.parametrize("size", [32, 128])
@pytest.mark.parametrize("name", REGISTRY.names("distortion"))
def test_distortion_never_waits_for_the_device(name: str, size: int) -> None:
    if name == "spatter" and not _spatter_fused.HYSTERESIS.available(torch.device("cuda")):
        # the torch path's Canny hysteresis grows edges until nothing changes, which only the device knows
        pytest.skip("spatter's torch path waits for the device by design; its fused kernels do not")
    distortion = REGISTRY.get("distortion", name)()
    device = torch.device("cuda")
    images = torch.rand(4, 3, size, size, device=device)
    seeds = sample_seeds(0, torch.arange(4)).to(device)
    severities = torch.tensor([1, 2, 3, 5])

    def both() -> None:
        distortion(images, 3, BatchRNG(seeds))
        distortion.call_mixed(images, severities, BatchRNG(seeds))

    both()  # the first calls fill the per-device caches (kernels, tables)
    torch.cuda.synchronize(device)
    torch.cuda.set_sync_debug_mode("error")
    try:
        both()
    finally:
        torch.cuda.set_sync_debug_mode("default")


def test_method_augmentations_never_wait_for_the_device() -> None:
    """AugMix's chains and DINO's views: drawn on the host, sent ahead, computed on the device."""
    from robench_plugins.methods.augmix import AugMixOptions, augment_and_mix
    from robench_plugins.methods.ssl import DINOOptions, dino_views

    images = torch.rand(8, 3, 32, 32, device="cuda")

    def both() -> None:
        augment_and_mix(images, torch.Generator().manual_seed(0), AugMixOptions())
        dino_views(images, torch.Generator().manual_seed(0), DINOOptions(local_views=2))

    both()
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        both()
    finally:
        torch.cuda.set_sync_debug_mode("default")


@pytest.mark.parametrize("size", [32, 128])
@pytest.mark.parametrize("name", REGISTRY.names("distortion"))
def test_mixed_severities_on_the_gpu_equal_each_severity_alone(name: str, size: int) -> None:
    """The one-pass mixes taken on GPUs (larger zero-bordered kernels, padded resize products,
    every zoom for every image) give each image what its severity gives alone, there too."""
    distortion = REGISTRY.get("distortion", name)()
    images = torch.rand(10, 3, size, size, generator=torch.Generator().manual_seed(size)).cuda()
    seeds = sample_seeds(5, torch.arange(10)).cuda()
    severities = torch.tensor([1, 2, 3, 4, 5, 5, 4, 3, 2, 1])
    mixed = distortion.call_mixed(images, severities, BatchRNG(seeds))
    for severity in range(1, 6):
        rows = (severities == severity).cuda()
        alone = distortion(images, severity, BatchRNG(seeds))[rows]
        difference = (mixed[rows] - alone).abs()
        # at most one uint8 level anywhere (snow quantises after a blur whose float rounding
        # may differ with the batch), and float rounding on average
        assert float(difference.max()) <= 1 / 255 + 1e-6 and float(difference.mean()) < 1e-5, severity
