"""Where a GPU's direct-sum Gaussian blur beats the banded matrix products, as JSON lines.

    python benchmarks/gpu_blur_cap.py [--batch 256] [--size 224] [--repeat 5]

``_filters._FUSED_BLUR_MAX_RADIUS`` caps the taps each side up to which a GPU sums directly (the
C kernel's order, bit-exact with the CPU); wider kernels take the matrices. This prints, for each
radius, both paths' images/s on one blur of a float32 batch (interleaved: direct, matrices,
direct, matrices), and for the distortions that blur, their images/s with the cap as set and
with no cap. Test it on the CPU with ``TRITON_INTERPRET=1 ... --device cpu --batch 2 --size 130
--repeat 1 --interpret``.
"""

from __future__ import annotations

import argparse
import json

import torch
from gpu import timed

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions import _filters

SIGMAS = {1: 0.3, 3: 0.7, 6: 1.5, 7: 1.7, 8: 2.0, 12: 3.0, 16: 4.0, 24: 6.0}  # radius -> sigma (truncate 4)
BLURRING = ("gaussian_blur", "glass_blur", "elastic_transform", "spatter")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--interpret", action="store_true", help="the kernels on the CPU (TRITON_INTERPRET=1)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.interpret:
        _filters._BLUR_KERNEL.available = lambda device: True
        _filters._in_c = lambda images: False
    cap = _filters._FUSED_BLUR_MAX_RADIUS
    images = torch.rand(args.batch, 3, args.size, args.size, generator=torch.Generator().manual_seed(0)).to(device)
    for radius, sigma in SIGMAS.items():
        direct, matrices = [], []
        for _ in range(2):
            _filters._FUSED_BLUR_MAX_RADIUS = 64
            direct.append(args.batch / timed(lambda s=sigma: _filters.gaussian_blur(images, s), device, args.repeat))
            _filters._FUSED_BLUR_MAX_RADIUS = -1
            matrices.append(args.batch / timed(lambda s=sigma: _filters.gaussian_blur(images, s), device, args.repeat))
        print(json.dumps({"kind": "blur", "radius": radius, "sigma": sigma, "size": args.size, "batch": args.batch,
                          "direct_images_per_s": [round(r) for r in direct],
                          "matrices_images_per_s": [round(r) for r in matrices]}), flush=True)
    registry = Registry(entry_points=False)
    seeds = sample_seeds(0, torch.arange(args.batch)).to(device)
    severities = (torch.arange(args.batch) % 5 + 1).to(device)
    for name in BLURRING:
        distortion = registry.get("distortion", name)()
        record = {"kind": "distortion_cap", "name": name, "size": args.size, "batch": args.batch, "cap": cap}
        for label, value in (("at_cap", cap), ("no_cap", 64), ("at_cap_again", cap), ("no_cap_again", 64)):
            _filters._FUSED_BLUR_MAX_RADIUS = value
            record[label] = round(args.batch / timed(lambda d=distortion: d(images, 3, BatchRNG(seeds)), device,
                                                     args.repeat))
            record[label + "_mixed"] = round(args.batch / timed(
                lambda d=distortion: d.call_mixed(images, severities, BatchRNG(seeds)), device, args.repeat))
        print(json.dumps(record), flush=True)
    _filters._FUSED_BLUR_MAX_RADIUS = cap


if __name__ == "__main__":
    main()
