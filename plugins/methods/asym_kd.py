"""Asymmetric knowledge distillation ("Distilling Vision Transformers for Distortion-Robust
Representation Learning", 2026): a frozen teacher sees the clean image, a student starting from
the same pretrained ViT sees the distorted one and learns to match the teacher at three levels:
the global embedding (CLS), the patch tokens and the attention maps.

The paper gives the idea, not every constant; each choice below is an option with a default.
Ablations run as their own leaderboard rows through presets: ``asym_kd:global``,
``asym_kd:patch``, ``asym_kd:attn`` (one term each) beside ``asym_kd`` (all three); any option
can be set the same way, e.g. ``asym_kd:attn_rows=all:lr=3e-4``.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from robench.api import (
    FitContext,
    Method,
    ViTFeatures,
    autocast,
    clip_and_step,
    cosine_schedule,
    extract_features,
    hookimpl,
    make_optimizer,
)

TERMS = ("global", "patch", "attn")
DISTANCES = ("cosine", "mse", "smooth_l1")


@dataclass(frozen=True)
class AsymKDOptions:
    """Hyper-parameters of asymmetric distillation.

    Attributes:
        terms: loss terms to train, any of ``global``, ``patch``, ``attn``.
        w_global, w_patch, w_attn: weights of the terms.
        distance: distance of CLS embeddings and patch tokens: ``cosine`` (1 - cosine
            similarity), ``mse`` or ``smooth_l1``.
        patch_blocks: blocks whose patch tokens are matched; the last block's are taken after the
            final norm, earlier blocks' after a parameter-free layer norm.
        attn_blocks: blocks whose attention maps are matched (only these leave the fused kernel).
        attn_rows: ``cls`` (the CLS token's attention over all tokens) or ``all`` (every row).
        severity: a fixed training severity; None samples one per image from the evaluated ones.
        lr, weight_decay, warmup_fraction, max_grad_norm: the shared AdamW recipe, with the same
            defaults as ``finetune`` (5e-4 suits the tiny default ViT; a hub ViT-S/B usually
            wants about 1e-4).
    """

    terms: tuple[str, ...] = TERMS
    w_global: float = 1.0
    w_patch: float = 1.0
    w_attn: float = 1.0
    distance: str = "cosine"
    patch_blocks: tuple[int, ...] = (-1,)
    attn_blocks: tuple[int, ...] = (-1,)
    attn_rows: str = "cls"
    severity: int | None = None
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if not self.terms or any(t not in TERMS for t in self.terms):
            raise ValueError(f"terms {self.terms!r}: choose from {', '.join(TERMS)}")
        if self.distance not in DISTANCES:
            raise ValueError(f"distance {self.distance!r}: choose from {', '.join(DISTANCES)}")
        if self.attn_rows not in ("cls", "all"):
            raise ValueError(f"attn_rows {self.attn_rows!r}: choose from cls, all")


class AsymKD(Method):
    """Asymmetric distillation: a clean-image teacher, a distorted-image student (paper's method)."""

    name = "asym_kd"
    uses_clean_images = True  # the teacher's side; the student only ever sees distorted images
    uses_labels = False
    Options = AsymKDOptions
    presets = {term: {"terms": (term,)} for term in TERMS}

    def fit(self, ctx: FitContext) -> nn.Module:
        opt = self.options
        student = ctx.backbone.train()
        teacher = _frozen_copy(student)
        optimizer = make_optimizer(student, opt.lr, opt.weight_decay)
        scheduler = cosine_schedule(optimizer, ctx.steps, round(opt.warmup_fraction * ctx.steps))
        per_epoch = max(1, math.ceil(ctx.num_train / ctx.batch_size))
        totals: dict[str, float] = {}
        for step, batch in enumerate(ctx.batches(clean=True, severity=opt.severity), start=1):
            with autocast(ctx.device):
                losses = self.losses(student, teacher, batch.images, batch.clean)
            loss = sum(getattr(opt, f"w_{term}") * value for term, value in losses.items())
            clip_and_step(loss, student, optimizer, scheduler, opt.max_grad_norm)
            for term, value in losses.items():
                totals[term] = totals.get(term, 0.0) + float(value.detach())
            if step % per_epoch == 0 or step == ctx.steps:
                count = per_epoch if step % per_epoch == 0 else step % per_epoch
                ctx.log(step=step, epoch=math.ceil(step / per_epoch),
                        **{f"loss_{t}": v / count for t, v in totals.items()})
                totals = {}
        return student.eval()

    def losses(
        self, student: nn.Module, teacher: nn.Module, distorted: torch.Tensor, clean: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The enabled loss terms for one batch (unweighted): student on ``distorted``, teacher on
        ``clean``."""
        opt = self.options
        depth = len(student.blocks)
        attn = sorted({b % depth for b in opt.attn_blocks}) if "attn" in opt.terms else []
        patch = sorted({b % depth for b in opt.patch_blocks}) if "patch" in opt.terms else []
        earlier = [b for b in patch if b != depth - 1]  # the last block's tokens come normed anyway
        with torch.inference_mode():  # cheaper than no_grad; the targets are cloned out of it
            target = extract_features(teacher, clean, attn_blocks=attn, token_blocks=earlier)
        target = _normal_tensors(target)
        output = extract_features(student, distorted, attn_blocks=attn, token_blocks=earlier)
        losses = {}
        if "global" in opt.terms:
            losses["global"] = _distance(output.cls.float(), target.cls.float(), opt.distance)
        if patch:
            pairs = [(_patch_tokens(output, b, depth), _patch_tokens(target, b, depth)) for b in patch]
            losses["patch"] = sum(_distance(s, t, opt.distance) for s, t in pairs) / len(pairs)
        if attn:
            kls = [_attention_kl(output.attentions[b], target.attentions[b], opt.attn_rows) for b in attn]
            losses["attn"] = sum(kls) / len(kls)
        return losses


def _frozen_copy(model: nn.Module) -> nn.Module:
    """The teacher: a copy in eval mode whose parameters never require gradients."""
    teacher = copy.deepcopy(model).eval()
    for param in teacher.parameters():
        param.requires_grad_(False)
    return teacher


def _normal_tensors(features: ViTFeatures) -> ViTFeatures:
    """Copies of inference-mode tensors that autograd may save (as constants) for backward."""
    return ViTFeatures(
        cls=features.cls.clone(), patches=features.patches.clone(),
        attentions={k: v.clone() for k, v in features.attentions.items()},
        tokens={k: v.clone() for k, v in features.tokens.items()},
    )


def _patch_tokens(features: ViTFeatures, block: int, depth: int) -> torch.Tensor:
    """Patch tokens of ``block``: after the final norm for the last block, after a
    parameter-free layer norm for earlier ones (so every block's tokens are on one scale)."""
    if block == depth - 1:
        return features.patches.float()
    tokens = features.tokens[block]
    prefix = tokens.shape[1] - features.patches.shape[1]
    return F.layer_norm(tokens[:, prefix:].float(), tokens.shape[-1:])


def _distance(student: torch.Tensor, teacher: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean distance between matching vectors (last dimension) of student and teacher."""
    if kind == "cosine":
        return (1 - F.cosine_similarity(student, teacher, dim=-1)).mean()
    if kind == "mse":
        return F.mse_loss(student, teacher)
    return F.smooth_l1_loss(student, teacher)


def _attention_kl(student: torch.Tensor, teacher: torch.Tensor, rows: str) -> torch.Tensor:
    """KL(teacher || student) of attention distributions ``(B, heads, T, T)``, per head and
    query row, averaged; ``rows="cls"`` uses the CLS token's row only."""
    if rows == "cls":
        student, teacher = student[:, :, :1], teacher[:, :, :1]
    student, teacher = student.float(), teacher.float()
    kl = teacher * (torch.log(teacher.clamp_min(1e-8)) - torch.log(student.clamp_min(1e-8)))
    return kl.sum(-1).mean()


@hookimpl
def robench_methods() -> list[type[Method]]:
    return [AsymKD]
