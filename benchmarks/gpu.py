"""Throughput figures for a GPU machine, printed as JSON lines (one per measurement).

    python benchmarks/gpu.py [--device cuda] [--batch 256] [--models vit_small_patch16_224,tiny_vit_32]

- ``matmul_bf16``: an 8192^3 bf16 matrix product, the attainable peak beside the data sheet's.
- ``model_only_step``: finetune's training step alone (forward, backward, clipping, fused AdamW,
  bf16 autocast) on one batch made beforehand, eager and under ``torch.compile``, with its FLOPs
  (torch's FLOP counter) and model FLOP utilisation (MFU) against the card's dense bf16 peak.
- ``fit``: each method's ``fit`` end to end through the real fit context (index gathers,
  augmentation and distortion on the device), with its ratio to finetune's and, for finetune,
  to the model-only step (the data path's overhead); asym_kd with and without the teacher cache,
  and three students sharing one teacher pass.
- ``evaluation_share``: evaluation of a CIFAR-10-sized cell against its training time.
- ``distortion``: images/s of every registered distortion at each size on a device-resident
  batch, with the largest difference between the device's output and the CPU's on the same
  images and seeds (the per-sample random streams are the same numbers on every device).

Models: a ViT-S/16 at 224 px and the tiny default ViT at 32 px. It needs nothing outside the
checkout (synthetic images); test it on the CPU with
``--device cpu --batch 8 --steps 2 --repeat 1 --sizes 32 --models tiny_vit_32 --no-compile``.
"""

from __future__ import annotations

import argparse
import copy
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


def distortion_figures(device: torch.device, batch: int, sizes: list[int], repeat: int,
                       names: list[str] | None = None) -> None:
    registry = Registry(entry_points=False)
    gen = torch.Generator().manual_seed(0)
    for size in sizes:
        images = torch.rand(batch, 3, size, size, generator=gen)
        on_device = images.to(device)
        seeds = sample_seeds(0, torch.arange(batch))
        severities = torch.arange(batch) % 5 + 1
        for name in names or registry.names("distortion"):
            distortion = registry.get("distortion", name)()
            seconds = timed(lambda: distortion(on_device, 3, BatchRNG(seeds.to(device))), device, repeat)
            # a training batch: severities 1-5 mixed (one pass, or one call per severity present)
            mixed = timed(lambda: distortion.call_mixed(on_device, severities, BatchRNG(seeds.to(device))),
                          device, repeat)
            check = min(batch, 4)
            cpu = distortion(images[:check], 3, BatchRNG(seeds[:check]))
            dev = distortion(on_device[:check], 3, BatchRNG(seeds[:check].to(device))).cpu()
            print(json.dumps({
                "kind": "distortion", "name": name, "size": size, "batch": batch,
                "images_per_s": round(batch / seconds, 1), "device": _device_name(device),
                "mixed_severities_images_per_s": round(batch / mixed, 1),
                "mixes_severities": distortion.mixes_severities,
                "max_abs_diff_vs_cpu": float((cpu - dev).abs().max()),
            }), flush=True)


METHODS = ("finetune", "asym_kd", "asym_kd:global", "asym_kd:attn_rows=all",
           "asym_kd:attn_blocks={all}", "asym_kd:attn_rows=all:attn_blocks={all}",
           "asym_kd:teacher_cache=true:variants=1", "augmix", "ssl")
MODELS = {  # name -> (backbone spec keyword arguments, image size)
    "vit_small_patch16_224": ({"model": "vit_small_patch16_224", "img_size": None, "patch_size": None,
                               "embed_dim": None, "depth": None, "num_heads": None}, 224),
    "tiny_vit_32": ({}, 32),
}
# dense bf16 tensor-core peaks (FLOP/s) from the vendors' data sheets, by device-name fragment
BF16_PEAKS = (("H100 PCIe", 756e12), ("H100", 989e12), ("H200", 989e12), ("A100", 312e12), ("L4", 121e12))


def emit(**record) -> None:
    print(json.dumps(record), flush=True)


def method_figures(device: torch.device, batch: int, steps: int, repeat: int, models: list[str],
                   compile: bool, evaluate: bool, methods: tuple[str, ...] = METHODS, shared: bool = True) -> None:
    """Per model: the model-only step (eager, compiled) with its FLOP utilisation, each method's
    ``fit`` end to end with its ratio to finetune's, the shared teacher, and evaluation's share."""
    from robench.backbone import BackboneSpec, create_backbone

    peak = _peak(device)
    for model_name in models:
        spec_kwargs, size = MODELS[model_name]
        backbone = create_backbone(BackboneSpec(**spec_kwargs), 10).to(device)
        n_images = 4 * batch
        images = torch.randint(0, 256, (n_images, 3, size, size), dtype=torch.uint8).to(device)
        labels = (torch.arange(n_images) % 10).to(device)
        common = dict(model=model_name, size=size, batch=batch, device=_device_name(device))
        flops = _guarded("step_flops", common, lambda: _step_flops(backbone, images[:batch], labels[:batch], device))

        def utilisation(rate: float) -> dict:
            if flops is None:
                return {}
            achieved = rate / batch * flops
            return {"tflops_per_s": round(achieved / 1e12, 1), "mfu": round(achieved / peak, 4) if peak else None}

        rates: dict[str, float | None] = {}
        for compiled in (False, True) if compile else (False,):
            label = "compiled" if compiled else "eager"
            rate = rates[f"model_only_{label}"] = _guarded(f"model_only_{label}", common, lambda: _model_only_rate(
                backbone, images[:batch], labels[:batch], device, steps, repeat, compiled))
            if rate:
                emit(kind="model_only_step", mode=label, images_per_s=round(rate, 1),
                     flops_per_image=round(flops / batch) if flops else None, **utilisation(rate), **common)
        for text in methods + (("finetune:compile",) if compile else ()):
            text = text.format(all="+".join(str(i) for i in range(len(backbone.blocks))))
            fit_steps = 4 * n_images // batch if "teacher_cache" in text else steps
            rate = rates[text] = _guarded(text, common, lambda: _fit_rate(
                text, backbone, images, labels, device, fit_steps, batch, repeat))
            if not rate:
                continue
            record = dict(kind="fit", method=text, steps=fit_steps, images_per_s=round(rate, 1),
                          ratio_to_finetune=_ratio(rate, rates.get("finetune")), **common)
            if text.startswith("finetune"):
                reference = rates.get("model_only_compiled" if text.endswith("compile") else "model_only_eager")
                record.update(ratio_to_model_only_step=_ratio(rate, reference), **utilisation(rate))
            emit(**record)
        rate = shared and _guarded("shared_teacher", common, lambda: _shared_teacher_rate(
            backbone, images, labels, device, steps, batch, repeat, students=3))
        if rate:
            emit(kind="fit", method="asym_kd x3 distortions, one teacher pass (per student)",
                 images_per_s=round(rate, 1), ratio_to_finetune=_ratio(rate, rates.get("finetune")),
                 ratio_to_asym_kd=_ratio(rate, rates.get("asym_kd")), **common)
        if evaluate and rates.get("finetune"):
            _guarded("evaluation_share", common, lambda: _evaluation_share(backbone, size, device, rates["finetune"],
                                                                           common))
        backbone = images = None  # free the device memory before the next model
        if device.type == "cuda":
            torch.cuda.empty_cache()


def _guarded(name: str, common: dict, fn):
    """``fn()``, or None after a JSON line naming the error (one failure must not end the run)."""
    try:
        return fn()
    except Exception as exc:  # a benchmark run on a lent machine must report what it can
        emit(kind="error", measurement=name, error=f"{type(exc).__name__}: {exc}".splitlines()[0], **common)
        return None


def _ratio(value: float, reference: float | None) -> float | None:
    return round(value / reference, 3) if reference else None


def _context(text: str, backbone, images, labels, device, steps: int, batch: int, distortion=None):
    from robench.api import FitContext
    from robench.data import label_budget
    from robench.method_spec import build_method, parse_method_spec
    from robench_plugins.distortions.noise import GaussianNoise

    compile = text.endswith(":compile")
    method = build_method(Registry(entry_points=False), parse_method_spec(text.removesuffix(":compile")))
    labelled = label_budget(labels.cpu(), 1.0, 0, "bench")
    return method, FitContext(method=method, backbone=copy.deepcopy(backbone), train_images=images,
                      labelled_indices=labelled, labelled_labels=labels[labelled.to(device)], num_classes=10,
                      hflip=True, distortion=distortion or GaussianNoise(), severities=(1, 2, 3, 4, 5),
                      dataset="bench", label_fraction=1.0, seed=0, steps=steps, batch_size=batch, device=device,
                      compile=compile)


def _fit_rate(text, backbone, images, labels, device, steps, batch, repeat) -> float:
    """Training images/s of ``fit`` end to end (data path included)."""
    def fit() -> None:
        method, ctx = _context(text, backbone, images, labels, device, steps, batch)
        method.fit(ctx)

    return steps * batch / timed(fit, device, repeat)


def _shared_teacher_rate(backbone, images, labels, device, steps, batch, repeat, students: int) -> float:
    """Images/s per student of ``fit_group`` over ``students`` distortions."""
    from robench_plugins.distortions.blur import DefocusBlur
    from robench_plugins.distortions.noise import GaussianNoise, ShotNoise

    distortions = [GaussianNoise(), ShotNoise(), DefocusBlur()][:students]

    def fit() -> None:
        pairs = [_context("asym_kd", backbone, images, labels, device, steps, batch, d) for d in distortions]
        pairs[0][0].fit_group([ctx for _, ctx in pairs])

    return students * steps * batch / timed(fit, device, repeat)


def _train_step(model, optimizer, images, labels, device):
    import torch.nn.functional as F

    from robench.training import autocast

    with autocast(device):
        loss = F.cross_entropy(model(images).float(), labels)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()


def _model_only_rate(backbone, images, labels, device, steps, repeat, compiled: bool) -> float:
    """Images/s of finetune's step alone (forward, backward, clipping, fused AdamW) on one batch
    made beforehand: the reference the data path is measured against."""
    from robench.training import make_optimizer

    model = copy.deepcopy(backbone).train()
    optimizer = make_optimizer(model, 5e-4)
    forward = torch.compile(model) if compiled else model
    batch = images.float() / 255

    def run() -> None:
        for _ in range(steps):
            _train_step(forward, optimizer, batch, labels, device)

    return steps * images.shape[0] / timed(run, device, repeat)


def _step_flops(backbone, images, labels, device) -> float:
    """FLOPs of one training step's forward and backward (torch's FLOP counter)."""
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    from robench.training import autocast

    model = copy.deepcopy(backbone).train()
    counter = FlopCounterMode(display=False)
    with counter:
        with autocast(device):
            loss = F.cross_entropy(model(images.float() / 255).float(), labels)
        loss.backward()
    return float(counter.get_total_flops())


def _evaluation_share(backbone, size: int, device, finetune_rate: float, common: dict) -> None:
    """Evaluation time of a CIFAR-10-sized cell (5,000 labelled train images for the probes,
    10,000 test images, clean + 5 severities), measured, against its training time at the measured
    finetune rate (50,000 images x 5 epochs, the default budget)."""
    from robench.data import DatasetSplits, Split
    from robench.evaluate import EvalConfig, evaluate_encoder, knn_predict, linear_probe
    from robench_plugins.distortions.noise import GaussianNoise

    gen = torch.Generator().manual_seed(1)
    def split(n: int) -> Split:
        return Split(torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=gen).to(device),
                     (torch.arange(n) % 10).to(device))

    data = DatasetSplits("bench", 10, True, split(5000), split(10000))
    encoder = copy.deepcopy(backbone)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    evaluate_encoder(encoder, data, torch.arange(5000), GaussianNoise(), (1, 2, 3, 4, 5), 0, EvalConfig(), device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    eval_s = time.perf_counter() - start
    train_s = 50_000 * 5 / finetune_rate
    # of which the two probes (L-BFGS linear probe, kNN), on features of the same shapes
    width = encoder.num_features
    train_x, test_x = torch.randn(5000, width, device=device), torch.randn(10000, width, device=device)
    train_y = data.train.labels
    probe_s = timed(lambda: linear_probe(train_x, train_y, test_x, 10), device, 1)
    knn_s = timed(lambda: knn_predict(train_x, train_y, test_x, 10), device, 1)
    emit(kind="evaluation_share", eval_s=round(eval_s, 2), train_s_at_finetune_rate=round(train_s, 2),
         eval_share=round(eval_s / (eval_s + train_s), 4), linear_probe_s_x6=round(6 * probe_s, 2),
         knn_s_x6=round(6 * knn_s, 2), **common)


def _peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for fragment, peak in BF16_PEAKS if fragment in name), None)


def matmul_figure(device: torch.device) -> None:
    """bf16 8192^3 matrix-product throughput: the attainable peak beside the data-sheet one."""
    if device.type != "cuda":
        return
    a = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
    seconds = timed(lambda: a @ a, device, 10)
    emit(kind="matmul_bf16", tflops_per_s=round(2 * 8192**3 / seconds / 1e12, 1),
         datasheet_peak_tflops=(_peak(device) or 0) / 1e12, device=_device_name(device))


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--sizes", default="224,32", help="image sizes of the distortion figures")
    parser.add_argument("--models", default=",".join(MODELS), help=f"of {', '.join(MODELS)}")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="training steps per timed fit")
    parser.add_argument("--no-compile", dest="compile", action="store_false", help="skip torch.compile figures")
    parser.add_argument("--no-eval", dest="evaluate", action="store_false", help="skip the evaluation share")
    parser.add_argument("--only", choices=("distortions", "methods"), help="run one part only")
    parser.add_argument("--distortions", help="comma-separated subset of the distortions; default all")
    parser.add_argument("--methods", help=f"comma-separated subset of {', '.join(METHODS)}, and 'shared' "
                        "(three students on one teacher pass); default all")
    args = parser.parse_args()
    device = torch.device(args.device)
    sizes = [int(s) for s in args.sizes.split(",")]
    models = args.models.split(",")
    chosen = args.methods.split(",") if args.methods else [*METHODS, "shared"]
    methods = dict(methods=tuple(m for m in chosen if m != "shared"), shared="shared" in chosen)
    matmul_figure(device)
    if args.only != "distortions":
        method_figures(device, args.batch, args.steps, args.repeat, models[:1], args.compile, args.evaluate,
                       **methods)
    if args.only != "methods":
        distortion_figures(device, args.batch, sizes, args.repeat,
                           args.distortions.split(",") if args.distortions else None)
    if args.only != "distortions":
        method_figures(device, args.batch, args.steps, args.repeat, models[1:], args.compile, args.evaluate,
                       **methods)


if __name__ == "__main__":
    main()
