"""Throughput figures for a GPU machine, printed as JSON lines (one per measurement).

    python benchmarks/gpu.py [--device cuda] [--batch 256] [--sizes 224,32] [--repeat 5]

Distortions: images/s of every registered distortion at each size, on a device-resident batch,
with CUDA synchronisation around the timed calls; plus, per distortion, the largest difference
between the device's output and the CPU's on the same images and seeds (the per-sample random
streams are the same numbers on every device).

It needs nothing outside the checkout (synthetic images in [0, 1]); test it on the CPU with
``--device cpu --batch 8 --repeat 1``.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds


def timed(fn, device: torch.device, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def distortion_figures(device: torch.device, batch: int, sizes: list[int], repeat: int) -> None:
    registry = Registry(entry_points=False)
    gen = torch.Generator().manual_seed(0)
    for size in sizes:
        images = torch.rand(batch, 3, size, size, generator=gen)
        on_device = images.to(device)
        seeds = sample_seeds(0, torch.arange(batch))
        for name in registry.names("distortion"):
            distortion = registry.get("distortion", name)()
            seconds = timed(lambda: distortion(on_device, 3, BatchRNG(seeds.to(device))), device, repeat)
            check = min(batch, 4)
            cpu = distortion(images[:check], 3, BatchRNG(seeds[:check]))
            dev = distortion(on_device[:check], 3, BatchRNG(seeds[:check].to(device))).cpu()
            print(json.dumps({
                "kind": "distortion", "name": name, "size": size, "batch": batch,
                "images_per_s": round(batch / seconds, 1), "device": _device_name(device),
                "max_abs_diff_vs_cpu": float((cpu - dev).abs().max()),
            }), flush=True)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", default="224,32")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    distortion_figures(device, args.batch, sizes, args.repeat)


if __name__ == "__main__":
    main()
