"""Distortions on a GPU with and without their own fused kernels, as JSON lines.

    python benchmarks/gpu_fused.py [--device cuda] [--batch 256] [--sizes 224,32]

For spatter (the kernels of ``_spatter_fused``), jpeg_compression (``_jpeg_fused``) and snow (its
blend), at each size: images/s of one severity (spatter's 1, water in both tables; the others' 3)
and of a batch of severities 1-5 mixed, with the distortion's fused kernels and with the torch
path they replace (other fused kernels, such as the random draws', stay on in both),
interleaved; then one call of that severity under ``torch.profiler``: operators, device busy
time against wall time, and the kernels that take most of the device's time. Test it on the CPU with
``--device cpu --batch 4 --sizes 32 --repeat 1``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))  # gpu.py beside this file
from gpu import timed  # noqa: E402
from gpu_profile import profiled_call  # noqa: E402

from robench.fused import FusedKernel
from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions import _jpeg_fused, _spatter_fused, weather

# name: (severity, its fused kernels)
MEASURED: dict[str, tuple[int, tuple[FusedKernel, ...]]] = {
    "spatter": (1, (_spatter_fused.CANNY, _spatter_fused.HYSTERESIS, _spatter_fused.DISTANCE, _spatter_fused.FINISH)),
    "jpeg_compression": (3, (_jpeg_fused.ENCODE, _jpeg_fused.DECODE)),
    "snow": (3, (weather._SNOW_BLEND,)),
}


def fused(kernels: tuple[FusedKernel, ...], on: bool) -> None:
    for kernel in kernels:
        if on:
            kernel.__dict__.pop("available", None)  # the class's check again
        else:
            kernel.available = lambda device: False


def figures(name: str, device: torch.device, batch: int, size: int, repeat: int) -> None:
    """The interleaved timings and the two profiles of distortion ``name`` at one image size."""
    distortion = Registry(entry_points=False).get("distortion", name)()
    severity, kernels = MEASURED[name]
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    seeds = sample_seeds(0, torch.arange(batch)).to(device)
    severities = torch.arange(batch) % 5 + 1
    calls = {f"severity_{severity}": lambda: distortion(images, severity, BatchRNG(seeds)),
             "mixed": lambda: distortion.call_mixed(images, severities, BatchRNG(seeds))}
    for call_name, call in calls.items():
        record = {"kind": "fused_vs_torch", "name": name, "call": call_name, "size": size, "batch": batch}
        for round_ in range(2):  # interleaved: fused, torch, fused, torch
            for on in (True, False):
                fused(kernels, on)
                record[f"{'fused' if on else 'torch'}_images_per_s_{round_}"] = round(batch / timed(call, device, repeat))
        fused(kernels, True)
        record["failed"] = [k.name for k in kernels if k.failed]
        print(json.dumps(record), flush=True)
    for on in (True, False):
        fused(kernels, on)
        figures = profiled_call(calls[f"severity_{severity}"], device, 10)
        print(json.dumps({"kind": "profile", "name": name, "fused": on, "size": size, **figures}), flush=True)
    fused(kernels, True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", default="224,32")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--names", default=",".join(MEASURED), help=f"of {', '.join(MEASURED)}")
    args = parser.parse_args()
    for name in args.names.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            figures(name, torch.device(args.device), args.batch, size, args.repeat)


if __name__ == "__main__":
    main()
