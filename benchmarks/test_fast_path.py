"""The fast path, as ratios measured in one run on this machine:

- data path: ``finetune``'s ``fit`` end to end (index gather, augmentation, distortion, step)
  against the model-only step on one pre-made batch (forward, backward, AdamW); and a batch of
  mixed severities distorted in one pass against one call per severity present;
- teacher-side savings of ``asym_kd``: the teacher cache in its steady state (every image's
  augmentation cached) and one teacher pass shared by three students, each against ``finetune``;
- evaluation against training: one real cell of the default run (``digits``, ``finetune``,
  ``gaussian_noise``, default epochs), fit time against evaluation time.
"""

from __future__ import annotations

import copy
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from robench.api import FitContext, Method, autocast
from robench.backbone import BackboneSpec, create_backbone
from robench.data import distort_mixed, label_budget
from robench.method_spec import build_method, parse_method_spec
from robench.registry import Registry
from robench.training import clip_and_step, make_optimizer
from robench_plugins.distortions.blur import DefocusBlur
from robench_plugins.distortions.noise import GaussianNoise, ShotNoise

from conftest import dropping, record

REGISTRY = Registry(entry_points=False)
SPEC = BackboneSpec(embed_dim=96, depth=4, num_heads=3)  # the tiny ViT of test_method_throughput
STEPS, BATCH, N_IMAGES = 8, 64, 512
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(N_IMAGES, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    labels = torch.arange(N_IMAGES) % 10
    return create_backbone(SPEC, 10), images, labels


def context(text: str, backbone, images, labels, distortion=None, steps: int = STEPS) -> tuple[Method, FitContext]:
    method = build_method(REGISTRY, parse_method_spec(text))
    labelled = label_budget(labels, 1.0, seed=0, dataset="bench")
    return method, FitContext(method=method, backbone=copy.deepcopy(backbone), train_images=images,
                      labelled_indices=labelled, labelled_labels=labels[labelled], num_classes=10, hflip=True,
                      distortion=distortion or GaussianNoise(), severities=(1, 2, 3, 4, 5), dataset="bench",
                      label_fraction=1.0, seed=0, steps=steps, batch_size=BATCH, device=CPU)


def test_model_only_step(benchmark, setup) -> None:
    """The reference of the data path: finetune's step on one batch made beforehand."""
    backbone, images, labels = setup
    model = copy.deepcopy(backbone).train()
    optimizer = make_optimizer(model, 5e-4)
    batch = images[:BATCH].float() / 255
    target = labels[:BATCH]

    def steps() -> None:
        for _ in range(STEPS):
            with autocast(CPU):
                loss = F.cross_entropy(model(batch).float(), target)
            clip_and_step(loss, model, optimizer, None, 1.0)

    benchmark.group = "fast path (tiny ViT, 32 px, CPU)"
    benchmark.pedantic(steps, rounds=3, warmup_rounds=1)
    record(("data-path", "model-only step"), images_per_s=STEPS * BATCH / benchmark.stats.stats.median)


def test_end_to_end_fit(benchmark, setup) -> None:
    backbone, images, labels = setup

    def fit() -> None:
        method, ctx = context("finetune", backbone, images, labels)
        method.fit(ctx)

    benchmark.group = "fast path (tiny ViT, 32 px, CPU)"
    benchmark.pedantic(fit, rounds=3, warmup_rounds=1)
    rate = STEPS * BATCH / benchmark.stats.stats.median
    record(("data-path", "finetune fit end to end"), images_per_s=rate)
    reference = _rate("data-path", "model-only step")
    if reference:
        record(("data-path", "finetune fit end to end"), ratio_to_model_only=rate / reference)


class _GroupedGaussianNoise(GaussianNoise):
    """gaussian_noise applied once per severity present, as distortions without apply_mixed are."""

    @property
    def mixes_severities(self) -> bool:
        return False


@pytest.mark.parametrize("way", ["one pass", "per severity"])
def test_mixed_severities(benchmark, way: str) -> None:
    """A training batch's distortion: 256 images at severities 1-5 mixed, gaussian_noise in one
    pass (``apply_mixed``) against one call per severity present (the fallback)."""
    images = torch.rand(256, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    severities = torch.arange(256) % 5 + 1
    seeds = torch.arange(256)
    distortion = GaussianNoise() if way == "one pass" else _GroupedGaussianNoise()
    benchmark.group = "mixed severities (gaussian_noise, 256 x 32 px, CPU)"
    benchmark.pedantic(dropping(lambda: distort_mixed(distortion, images, severities, seeds)), rounds=20, warmup_rounds=2)
    record(("mixed severities", way), images_per_s=256 / benchmark.stats.stats.median)
    grouped, single = _rate("mixed severities", "per severity"), _rate("mixed severities", "one pass")
    if grouped and single:
        record(("mixed severities", "one pass"), ratio_to_per_severity=single / grouped)


TEACHER_CASES = ("finetune", "asym_kd", "asym_kd:teacher_cache=true:variants=1")


def test_teacher_savings(benchmark, setup) -> None:
    """asym_kd with and without the teacher cache against finetune, over four epochs of 512 images
    each: with ``variants=1`` the first epoch fills the cache (it lives for one fit) and the next
    three read it. Each round fits all three in turn (this machine's speed drifts over minutes:
    a ratio's two sides must see the same machine); each one's figure is its median round."""
    backbone, images, labels = setup
    steps = 4 * N_IMAGES // BATCH  # four epochs: the first fills the cache, three read it
    seconds: dict[str, list[float]] = {text: [] for text in TEACHER_CASES}

    def one_round() -> None:
        for text in TEACHER_CASES:
            method, ctx = context(text, backbone, images, labels, steps=steps)
            start = time.perf_counter()
            method.fit(ctx)
            seconds[text].append(time.perf_counter() - start)

    benchmark.group = "teacher savings (tiny ViT, 32 px, CPU)"
    benchmark.pedantic(one_round, rounds=3, warmup_rounds=0)
    for text in TEACHER_CASES:
        record(("teacher", text), images_per_s=steps * BATCH / statistics.median(seconds[text]))
        _ratio_to("teacher", text, "finetune")


def test_shared_teacher(benchmark, setup) -> None:
    """Three students (three distortions) trained on one teacher pass per step: images/s per
    student, against ``asym_kd`` alone (``teacher asym_kd``)."""
    backbone, images, labels = setup
    steps = 4 * N_IMAGES // BATCH
    distortions = [GaussianNoise(), ShotNoise(), DefocusBlur()]

    def fit() -> None:
        pairs = [context("asym_kd", backbone, images, labels, d, steps=steps) for d in distortions]
        pairs[0][0].fit_group([ctx for _, ctx in pairs])

    benchmark.group = "teacher savings (tiny ViT, 32 px, CPU)"
    benchmark.pedantic(fit, rounds=2, warmup_rounds=0)
    rate = len(distortions) * steps * BATCH / benchmark.stats.stats.median
    record(("teacher", "asym_kd x3 shared teacher (per student)"), images_per_s=rate)
    _ratio_to("teacher", "asym_kd x3 shared teacher (per student)", "finetune")


def test_evaluation_share_of_a_default_cell(benchmark, tmp_path, monkeypatch) -> None:
    """One cell of the default run (digits, finetune, gaussian_noise, seed 0) through the runner's
    own ``compute_cells``: the share of its time spent evaluating (probes at 5 severities + clean)."""
    from robench.cells import compute_cells, prepare_dataset
    from robench.config import make_config
    from robench.results import CellKey

    monkeypatch.setenv("ROBENCH_CACHE", str(tmp_path / "cache"))
    config = make_config(methods="finetune", distortions="gaussian_noise", seeds="0", device="cpu",
                         out=tmp_path / "run", quiet=True)
    prepare_dataset(config, "digits")  # pretraining, outside the measurement
    key = CellKey("digits", "gaussian_noise", "finetune", 0)
    results = []
    benchmark.group = "evaluation share of a cell (default run, CPU)"
    benchmark.pedantic(lambda: results.append(compute_cells(config, [key], "bench")[0]), rounds=1)
    timing = results[-1].timing
    record(("cell", "digits finetune gaussian_noise"), fit_s=timing["fit_s"], eval_s=timing["eval_s"],
           eval_share=timing["eval_s"] / (timing["fit_s"] + timing["eval_s"]))


def _rate(group: str, name: str) -> float | None:
    from conftest import RATES

    return RATES.get((group, name), {}).get("images_per_s")


def _ratio_to(group: str, name: str, reference: str) -> None:
    base = _rate(group, reference)
    if base and name != reference:
        record((group, name), ratio_to_finetune=_rate(group, name) / base)
