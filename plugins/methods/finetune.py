"""Supervised fine-tuning on distorted images: the standard baseline for robustness to a known
corruption (e.g. Dodge & Karam, 2017; Vasiljevic et al., 2016), within the label budget."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F
from torch import nn

from robench.api import (
    FitContext,
    Method,
    autocast,
    clip_and_step,
    cosine_schedule,
    hookimpl,
    make_optimizer,
)


@dataclass(frozen=True)
class FinetuneOptions:
    """Hyper-parameters of supervised fine-tuning.

    Attributes:
        lr: peak AdamW learning rate (5e-4 suits the tiny default ViT and short budgets; a
            hub ViT-S/B usually wants about 1e-4, e.g. ``finetune:lr=1e-4``).
        weight_decay: AdamW weight decay (not on biases, norms, embeddings).
        warmup_fraction: fraction of the steps with linear warmup before the cosine decay.
        label_smoothing: cross-entropy label smoothing.
        max_grad_norm: gradient clipping threshold (None: no clipping).
        log_every: log the mean loss every this many steps.
    """

    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    max_grad_norm: float | None = 1.0
    log_every: int = 10


class Finetune(Method):
    """Fine-tune the whole ViT with cross-entropy on distorted labelled images (label budget)."""

    name = "finetune"
    uses_labels = True
    Options = FinetuneOptions

    def fit(self, ctx: FitContext) -> nn.Module:
        opt = self.options
        model = ctx.backbone.train()
        forward = ctx.compiled(model)  # torch.compile under --compile
        optimizer = make_optimizer(model, opt.lr, opt.weight_decay)
        scheduler = cosine_schedule(optimizer, ctx.steps, round(opt.warmup_fraction * ctx.steps))
        running, count = 0.0, 0
        for step, batch in enumerate(ctx.batches(labelled=True), start=1):
            with autocast(ctx.device):
                logits = forward(batch.images)
            loss = F.cross_entropy(logits.float(), batch.labels, label_smoothing=opt.label_smoothing)
            running += clip_and_step(loss, model, optimizer, scheduler, opt.max_grad_norm).double()
            count += 1
            if step % opt.log_every == 0 or step == ctx.steps:
                ctx.log(step=step, loss=running / count)
                running, count = 0.0, 0
        return model.eval()


@hookimpl
def robench_methods() -> list[type[Method]]:
    return [Finetune]
