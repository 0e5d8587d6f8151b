"""Images per second of every distortion on the CPU, at 32 and 224 px, beside the reference.

robench runs a batch of 256 images; ``imagecorruptions`` (the reference, one image at a time)
runs on a slice of the same images, as many distinct ones as take about a quarter of a second
(4 to 60: a round of 4 fast corruptions' images lasted 2-4 ms, and their ratios swung up to 2x
between runs); both are timed by pytest-benchmark in the same run, each corruption's two sides
one right after the other, and the summary prints robench's images/s, the reference's, and their
ratio.
"""

from __future__ import annotations

import time

import pytest
import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds

from conftest import dropping, record
from reference import imagecorruptions, real_images, to_uint8_hwc

REGISTRY = Registry(entry_points=False)
BATCH = 256
REFERENCE_IMAGES = (4, 60)  # fewest and most images of a reference round (60 distinct real images)
REFERENCE_ROUND_S = 0.25
SEVERITY = 3


@pytest.fixture(scope="module", params=[32, 224])
def batch(request: pytest.FixtureRequest) -> torch.Tensor:
    images = real_images(60, request.param)
    return images.repeat(BATCH // 60 + 1, 1, 1, 1)[:BATCH].contiguous()


@pytest.mark.parametrize("side", ["robench", "reference"])  # the faster-varying: each pair back to back
@pytest.mark.parametrize("name", REGISTRY.names("distortion"))
def test_throughput(benchmark, batch: torch.Tensor, name: str, side: str) -> None:
    """One side of a corruption's pair, run right after the other (this machine's speed drifts
    over minutes: measured apart, the two sides of a ratio would see different machines)."""
    size = batch.shape[-1]
    benchmark.group = f"{name} {size}px"
    if side == "robench":
        distortion = REGISTRY.get("distortion", name)()
        seeds = sample_seeds(0, torch.arange(BATCH))
        count = BATCH
        # three warm-up calls: the heap settles into reusing the batch-sized buffers (robench.host_memory);
        # each output released as the call returns (conftest.dropping)
        benchmark.pedantic(dropping(lambda: distortion(batch, SEVERITY, BatchRNG(seeds))), rounds=5, warmup_rounds=3)
    else:
        if name not in imagecorruptions().get_corruption_names("all"):
            pytest.skip(f"imagecorruptions has no {name}")
        corrupt = imagecorruptions().corrupt
        fewest, most = REFERENCE_IMAGES
        images = to_uint8_hwc(batch[:most])
        start = time.perf_counter()
        for image in images[:fewest]:
            corrupt(image, SEVERITY, corruption_name=name)
        each = (time.perf_counter() - start) / fewest
        images = images[: min(most, max(fewest, round(REFERENCE_ROUND_S / each)))]
        count = len(images)

        def run() -> None:
            for image in images:
                corrupt(image, SEVERITY, corruption_name=name)

        benchmark.pedantic(run, rounds=3, warmup_rounds=1)
        benchmark.extra_info["images"] = count
    rate = count / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = rate
    record((name, f"{size}px"), **{side: rate})
