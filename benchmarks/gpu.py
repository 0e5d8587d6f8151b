"""Throughput figures for a GPU machine, printed as JSON lines (one per measurement).

    python benchmarks/gpu.py [--device cuda] [--batch 256] [--sizes 224,32] [--repeat 5]

Distortions: images/s of every registered distortion at each size, on a device-resident batch,
with CUDA synchronisation around the timed calls; plus, per distortion, the largest difference
between the device's output and the CPU's on the same images and seeds (the per-sample random
streams are the same numbers on every device).

Methods: training images/s of finetune and asym_kd (last-block attention, and every block's) on
the same model and batch, through the real fit context (bf16 autocast on CUDA): a ViT-S/16 at
224 px and the tiny default ViT at 32 px; each line carries its ratio to finetune.

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


METHODS = ("finetune", "asym_kd", "asym_kd:global", "asym_kd:attn_blocks={all}")
MODELS = {  # name -> (backbone spec keyword arguments, image size)
    "vit_small_patch16_224": ({"model": "vit_small_patch16_224", "img_size": None, "patch_size": None,
                               "embed_dim": None, "depth": None, "num_heads": None}, 224),
    "tiny_vit_32": ({}, 32),
}


def method_figures(device: torch.device, batch: int, steps: int, repeat: int) -> None:
    from robench.api import FitContext
    from robench.backbone import BackboneSpec, create_backbone
    from robench.data import label_budget
    from robench.method_spec import build_method, parse_method_spec
    from robench_plugins.distortions.noise import GaussianNoise

    registry = Registry(entry_points=False)
    for model_name, (spec_kwargs, size) in MODELS.items():
        backbone = create_backbone(BackboneSpec(**spec_kwargs), 10).to(device)
        images = torch.randint(0, 256, (4 * batch, 3, size, size), dtype=torch.uint8).to(device)
        labels = (torch.arange(4 * batch) % 10).to(device)
        labelled = label_budget(labels.cpu(), 1.0, 0, "bench")
        baseline = None
        for text in METHODS:
            text = text.format(all="+".join(str(i) for i in range(len(backbone.blocks))))
            method = build_method(registry, parse_method_spec(text))

            def fit() -> None:
                ctx = FitContext(method=method, backbone=backbone, train_images=images,
                                 labelled_indices=labelled, labelled_labels=labels[labelled.to(device)],
                                 num_classes=10, hflip=True, distortion=GaussianNoise(), severities=(1, 2, 3, 4, 5),
                                 dataset="bench", label_fraction=1.0, seed=0, steps=steps, batch_size=batch,
                                 device=device)
                method.fit(ctx)

            rate = steps * batch / timed(fit, device, repeat)
            baseline = baseline or rate
            print(json.dumps({"kind": "method", "model": model_name, "size": size, "method": text,
                              "batch": batch, "images_per_s": round(rate, 1),
                              "ratio_to_finetune": round(rate / baseline, 3), "device": _device_name(device)}),
                  flush=True)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", default="224,32")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed fit")
    parser.add_argument("--only", choices=("distortions", "methods"), help="run one part only")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    if args.only != "methods":
        distortion_figures(device, args.batch, sizes, args.repeat)
    if args.only != "distortions":
        method_figures(device, args.batch, args.steps, args.repeat)


if __name__ == "__main__":
    main()
