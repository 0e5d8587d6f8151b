"""An example robench plugin package: a dataset, a distortion and a method.

Installed with pip, it is found through its entry point in the group ``robench``.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robench.api import (
    BatchRNG,
    ConfigError,
    Dataset,
    Distortion,
    FitContext,
    Method,
    clip_and_step,
    cosine_schedule,
    hookimpl,
    make_optimizer,
)

__version__ = "0.1.0"


class Stripes(Dataset):
    """Noisy stripe patterns; the class is the stripe orientation (4 classes), 32x32 RGB."""

    name = "example_stripes"
    num_classes = 4

    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r}; valid: train, test")
        n = 400 if split == "train" else 200
        gen = torch.Generator().manual_seed(0 if split == "train" else 1)
        labels = torch.arange(n) % self.num_classes
        angle = labels.float() * math.pi / self.num_classes
        axis = torch.arange(32, dtype=torch.float32)
        y, x = torch.meshgrid(axis, axis, indexing="ij")
        phase = torch.rand(n, 1, 1, generator=gen) * 2 * math.pi
        proj = x * torch.cos(angle)[:, None, None] + y * torch.sin(angle)[:, None, None]
        wave = 0.5 + 0.4 * torch.sin(proj * 0.8 + phase)
        noise = 0.1 * torch.randn(n, 3, 32, 32, generator=gen)
        images = (wave[:, None] + noise).clamp(0, 1)
        return (images * 255).round().to(torch.uint8), labels


class Invert(Distortion):
    """Blend towards the photographic negative; severity s mixes s/10 of the negative."""

    name = "example_invert"
    group = "digital"

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        alpha = severity / 10
        return (1 - alpha) * images + alpha * (1 - images)


class NormTune(Method):
    """Train only the LayerNorm parameters and the head on distorted labelled images."""

    name = "example_norm_tune"
    uses_labels = True

    def fit(self, ctx: FitContext) -> nn.Module:
        model = ctx.backbone.train()
        for name, param in model.named_parameters():
            param.requires_grad = "norm" in name or name.startswith("head.")
        optimizer = make_optimizer(model, lr=1e-3, weight_decay=0.0)
        scheduler = cosine_schedule(optimizer, ctx.steps, warmup_steps=0)
        for step, batch in enumerate(ctx.batches(labelled=True), start=1):
            loss = F.cross_entropy(model(batch.images), batch.labels)
            ctx.log(step=step, loss=clip_and_step(loss, model, optimizer, scheduler))
        return model.eval()


@hookimpl
def robench_datasets() -> list[type[Dataset]]:
    return [Stripes]


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [Invert]


@hookimpl
def robench_methods() -> list[type[Method]]:
    return [NormTune]
