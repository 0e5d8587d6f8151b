"""Where a GPU spends a distortion's time, printed as JSON lines: evidence for the next change.

    python benchmarks/gpu_profile.py [--device cuda] [--batch 256] [--sizes 224,32]

- ``mixing``: for every distortion, a batch of severities 1-5 mixed, three ways: ``call_mixed``
  as the device chooses, its one-pass ``apply_mixed`` where launches bound the device
  (``_device.launch_bound`` forced true), and one ``apply`` per severity present
  (``apply_grouped``): which way a device should take, measured.
- ``step_parts``: the parts of a ViT-S/16 training step at 224 px, each alone: the data path
  (index gather, augmentation, a mixed-severity gaussian_noise batch), the teacher's inference
  forward (what asym_kd adds without its cache) and finetune's model-only step; asym_kd's step as
  its teacher targets and its student's step (forward, losses, backward, AdamW) on them.
- ``kernels``: one severity-3 call of each named distortion under ``torch.profiler``: the
  operators launched, the device's busy time against the wall time (a low share means launch- or
  host-bound), and the kernels that take most of the device's time.

Test it on the CPU with ``--device cpu --batch 4 --sizes 32 --repeat 1 --steps 1``.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from unittest import mock

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).parent))  # gpu.py beside this file
from gpu import MODELS, _context, _train_step, timed  # noqa: E402

from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions import _device

PROFILED = ("glass_blur", "spatter", "frost", "fog", "snow", "shot_noise", "zoom_blur", "motion_blur",
            "elastic_transform", "jpeg_compression", "gaussian_noise")


def mixing_figures(registry: Registry, device: torch.device, batch: int, size: int, repeat: int) -> None:
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    seeds = sample_seeds(0, torch.arange(batch)).to(device)
    severities = torch.arange(batch) % 5 + 1
    for name in registry.names("distortion"):
        distortion = registry.get("distortion", name)()
        record = {"kind": "mixing", "name": name, "size": size, "batch": batch}
        record["chosen"] = batch / timed(lambda d=distortion: d.call_mixed(images, severities, BatchRNG(seeds)),
                                         device, repeat)
        if distortion.mixes_severities:
            with mock.patch.object(_device, "launch_bound", lambda device: True):
                record["one_pass"] = batch / timed(
                    lambda d=distortion: d.apply_mixed(images, severities, BatchRNG(seeds)), device, repeat)
        record["grouped"] = batch / timed(
            lambda d=distortion: d.apply_grouped(images, severities, BatchRNG(seeds)), device, repeat)
        print(json.dumps({k: round(v) if isinstance(v, float) else v for k, v in record.items()}), flush=True)


def profiled_call(call, device: torch.device, top: int) -> dict:
    """One ``call()`` (after a warm-up call) under ``torch.profiler``: its wall time, the device's
    busy time, the top-level operators, the kernel launches and the ``top`` kernels by time."""
    call()  # warm-up: caches, kernels, allocator
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        call()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        wall = time.perf_counter() - start
    kernels: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
    operators = 0
    for event in prof.events():
        if getattr(event, "device_type", None) == torch.autograd.DeviceType.CUDA:
            entry = kernels[event.name[:90]]
            entry[0] += getattr(event, "device_time_total", None) or getattr(event, "cuda_time_total", 0.0)
            entry[1] += 1
        elif event.name.startswith("aten::") and event.cpu_parent is None:
            operators += 1
    busy = sum(t for t, _ in kernels.values())
    ranked = sorted(kernels.items(), key=lambda kv: -kv[1][0])[:top]
    return {"wall_ms": round(wall * 1e3, 3), "device_busy_ms": round(busy / 1e3, 3), "top_level_operators": operators,
            "kernel_launches": sum(n for _, n in kernels.values()),
            "top": [{"kernel": k, "ms": round(t / 1e3, 3), "calls": n} for k, (t, n) in ranked]}


def kernel_figures(registry: Registry, device: torch.device, batch: int, size: int, top: int) -> None:
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0)).to(device)
    seeds = sample_seeds(0, torch.arange(batch)).to(device)
    for name in PROFILED:
        if name not in registry.names("distortion"):
            continue
        distortion = registry.get("distortion", name)()
        figures = profiled_call(lambda d=distortion: d(images, 3, BatchRNG(seeds)), device, top)
        print(json.dumps({"kind": "kernels", "name": name, "size": size, "batch": batch, "severity": 3, **figures}),
              flush=True)


def step_parts(device: torch.device, batch: int, steps: int, repeat: int) -> None:
    from robench.backbone import BackboneSpec, create_backbone
    from robench.training import autocast, make_optimizer

    spec_kwargs, size = MODELS["vit_small_patch16_224"]
    backbone = create_backbone(BackboneSpec(**spec_kwargs), 10).to(device)
    images = torch.randint(0, 256, (4 * batch, 3, size, size), dtype=torch.uint8).to(device)
    labels = (torch.arange(4 * batch) % 10).to(device)

    def data_path() -> None:
        _, ctx = _context("finetune", backbone, images, labels, device, steps, batch)
        for _ in ctx.batches(labelled=True):
            pass

    first = images[:batch].float() / 255

    def teacher() -> None:
        with torch.inference_mode(), autocast(device):
            for _ in range(steps):
                backbone.forward_features(first)

    model = copy.deepcopy(backbone).train()
    optimizer = make_optimizer(model, 5e-4)

    def step() -> None:
        for _ in range(steps):
            _train_step(model, optimizer, first, labels[:batch], device)

    # asym_kd's step in two parts: the teacher's targets, and the student's step on them
    from robench.method_spec import build_method, parse_method_spec
    from robench.training import clip_and_step
    from robench_plugins.methods.asym_kd import _frozen_copy, _teacher_features

    method = build_method(Registry(entry_points=False), parse_method_spec("asym_kd"))
    frozen = _frozen_copy(backbone, torch.bfloat16 if device.type == "cuda" else None)  # as asym_kd's default
    blocks = method._blocks(len(frozen.blocks))

    def kd_teacher() -> None:
        with autocast(device):
            for _ in range(steps):
                _teacher_features(frozen, first, blocks)

    with autocast(device):
        target = _teacher_features(frozen, first, blocks)
    student = copy.deepcopy(backbone).train()
    kd_optimizer = make_optimizer(student, 5e-4)

    def kd_student() -> None:
        for _ in range(steps):
            with autocast(device):
                losses = method._student_losses(student, target, first, blocks)
            clip_and_step(sum(losses.values()), student, kd_optimizer)

    record = {"kind": "step_parts", "model": "vit_small_patch16_224", "size": size, "batch": batch}
    for name, fn in (("data_path", data_path), ("teacher_forward", teacher), ("model_only_step", step),
                     ("asym_kd_teacher_targets", kd_teacher), ("asym_kd_student_step", kd_student)):
        record[f"{name}_ms"] = round(timed(fn, device, repeat) / steps * 1e3, 3)
    print(json.dumps(record), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", default="224,32")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="batches per timed step part")
    parser.add_argument("--no-steps", dest="parts", action="store_false", help="skip the step parts")
    parser.add_argument("--top", type=int, default=8, help="kernels listed per distortion")
    args = parser.parse_args()
    device = torch.device(args.device)
    registry = Registry(entry_points=False)
    sizes = [int(s) for s in args.sizes.split(",")]
    parts = [lambda: kernel_figures(registry, device, args.batch, sizes[0], args.top)]
    parts += [lambda size=size: mixing_figures(registry, device, args.batch, size, args.repeat) for size in sizes]
    if args.parts:
        parts.append(lambda: step_parts(device, args.batch, args.steps, args.repeat))
    for part in parts:  # one failing part must not cost the others' figures
        try:
            part()
        except Exception as error:  # noqa: BLE001 - reported, then the next part runs
            print(json.dumps({"kind": "error", "error": f"{type(error).__name__}: {error}"}), flush=True)


if __name__ == "__main__":
    main()
