"""Training throughput of the methods on one model and batch: asym_kd beside finetune.

Each benchmark runs ``fit`` for a fixed number of steps through the real fit context (batch
gathering, augmentation, distortion, forward, backward, AdamW), on the CPU with a tiny ViT at
32 px; the summary prints images/s and each method's ratio to finetune.
"""

from __future__ import annotations

import copy

import pytest
import torch

from robench.api import FitContext
from robench.backbone import BackboneSpec, create_backbone
from robench.data import label_budget
from robench.method_spec import build_method, parse_method_spec
from robench.registry import Registry
from robench_plugins.distortions.noise import GaussianNoise

from conftest import record

REGISTRY = Registry(entry_points=False)
SPEC = BackboneSpec(embed_dim=96, depth=4, num_heads=3)  # a tiny ViT at 32 px
STEPS, BATCH = 8, 64
METHODS = ["finetune", "asym_kd", "asym_kd:global", "asym_kd:attn_blocks=0+1+2+3"]


@pytest.fixture(scope="module")
def setup() -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(512, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    labels = torch.arange(512) % 10
    return create_backbone(SPEC, 10), images, labels


@pytest.mark.parametrize("text", METHODS)
def test_training_throughput(benchmark, setup, text: str) -> None:
    backbone, images, labels = setup
    method = build_method(REGISTRY, parse_method_spec(text))
    labelled = label_budget(labels, 1.0, seed=0, dataset="bench")

    def fit() -> None:
        ctx = FitContext(method=method, backbone=copy.deepcopy(backbone), train_images=images,
                         labelled_indices=labelled, labelled_labels=labels, num_classes=10, hflip=True,
                         distortion=GaussianNoise(), severities=(1, 2, 3, 4, 5), dataset="bench",
                         label_fraction=1.0, seed=0, steps=STEPS, batch_size=BATCH, device=torch.device("cpu"))
        method.fit(ctx)

    benchmark.group = "training step throughput (tiny ViT, 32 px, CPU)"
    benchmark.pedantic(fit, rounds=3, warmup_rounds=1)
    rate = STEPS * BATCH / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = rate
    record(("train", text), images_per_s=rate)
