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

import contextlib
import copy
import logging
import math
from collections.abc import Sequence
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
    to_device,
)

logger = logging.getLogger(__name__)

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
        attn_blocks: blocks whose attention maps are matched.
        attn_rows: ``cls`` (the CLS token's attention over all tokens, computed beside the fused
            attention kernel from the block's query/key projections: nothing T x T is
            materialised) or ``all`` (every row; the matched blocks leave the fused kernel).
        severity: a fixed training severity; None samples one per image from the evaluated ones.
        variants: if set, each image is augmented by one of this many fixed augmentations (a
            fresh augmentation every step otherwise).
        teacher_cache: keep the teacher's outputs per (image, augmentation variant) on the device
            and compute each only once (implies ``variants``, 4 unless set); skipped, with a
            warning, when they would take more than ``teacher_cache_gb``. The losses are those
            of the uncached path with the same variants.
        teacher_bf16: on a GPU, the frozen teacher runs in bf16 weights and activations, outside
            the student's autocast (whose float32 layer norms and residual stream, and the casts
            between them, cost the teacher's forward time): its targets to bf16 precision, its
            attention rows' softmax in float32. False: the teacher under autocast, as the
            student. CPU runs are float32 either way.
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
    variants: int | None = None
    teacher_cache: bool = False
    teacher_cache_gb: float = 2.0
    teacher_bf16: bool = True
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if self.variants is not None and self.variants < 1:
            raise ValueError(f"variants {self.variants}: must be at least 1")
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
        return self.fit_group([ctx])[0]

    def fit_group(self, contexts: Sequence[FitContext]) -> list[nn.Module]:
        """Train one student per context (the cells of one seed under several distortions) with
        one teacher pass per batch: the contexts hand out the same clean images in the same
        order, so each student's losses are exactly those of its own :meth:`fit`."""
        opt = self.options
        low_precision = opt.teacher_bf16 and contexts[0].device.type == "cuda"
        teacher = _frozen_copy(contexts[0].backbone, torch.bfloat16 if low_precision else None)
        blocks = self._blocks(len(teacher.blocks))
        variants = opt.variants or (DEFAULT_VARIANTS if opt.teacher_cache else None)
        cache = _TeacherCache.create(contexts[0], variants, opt.teacher_cache_gb) if opt.teacher_cache else None
        trainers = [_Trainer(ctx, opt) for ctx in contexts]
        streams = [ctx.batches(clean=True, severity=opt.severity, variants=variants) for ctx in contexts]
        for step, batches in enumerate(zip(*streams), start=1):
            first = batches[0]
            with autocast(first.clean.device):
                target = self._targets(teacher, first, blocks, cache, variants)
            for trainer, batch in zip(trainers, batches):
                with autocast(batch.images.device):
                    losses = self._student_losses(trainer.student, target, batch.images, blocks)
                trainer.step(step, losses)
        return [trainer.student.eval() for trainer in trainers]

    def losses(
        self, student: nn.Module, teacher: nn.Module, distorted: torch.Tensor, clean: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The enabled loss terms for one batch (unweighted): student on ``distorted``, teacher on
        ``clean``."""
        blocks = self._blocks(len(student.blocks))
        return self._student_losses(student, _teacher_features(teacher, clean, blocks), distorted, blocks)

    def _blocks(self, depth: int) -> _Blocks:
        opt = self.options
        attn = sorted({b % depth for b in opt.attn_blocks}) if "attn" in opt.terms else []
        patch = sorted({b % depth for b in opt.patch_blocks}) if "patch" in opt.terms else []
        return _Blocks(depth, attn, patch, [b for b in patch if b != depth - 1], self.options.attn_rows)

    def _targets(self, teacher: nn.Module, batch, blocks: _Blocks, cache: _TeacherCache | None,
                 variants: int | None) -> ViTFeatures:
        if cache is None:
            return _teacher_features(teacher, batch.clean, blocks)
        keys = batch.host_indices * variants + batch.host_variants
        return cache.fetch(keys, lambda rows: _teacher_features(teacher, batch.clean[rows], blocks))

    def _student_losses(self, student: nn.Module, target: ViTFeatures, distorted: torch.Tensor,
                        blocks: _Blocks) -> dict[str, torch.Tensor]:
        opt = self.options
        output = extract_features(student, distorted, attn_blocks=blocks.attn, token_blocks=blocks.earlier,
                                  attn_rows=blocks.rows)
        losses = {}
        if "global" in opt.terms:
            losses["global"] = _distance(output.cls.float(), target.cls.float(), opt.distance)
        if blocks.patch:
            pairs = [(_patch_tokens(output, b, blocks.depth), _patch_tokens(target, b, blocks.depth))
                     for b in blocks.patch]
            losses["patch"] = sum(_distance(s, t, opt.distance) for s, t in pairs) / len(pairs)
        if blocks.attn:
            kls = [_attention_kl(output.attentions[b], target.attentions[b], opt.attn_rows) for b in blocks.attn]
            losses["attn"] = sum(kls) / len(kls)
        return losses


DEFAULT_VARIANTS = 4


@dataclass(frozen=True)
class _Blocks:
    """Which blocks the enabled terms read: attention maps, patch tokens, earlier blocks' tokens."""

    depth: int
    attn: list[int]
    patch: list[int]
    earlier: list[int]
    rows: str


class _Trainer:
    """One student's optimiser, schedule and per-epoch loss log."""

    def __init__(self, ctx: FitContext, opt: AsymKDOptions) -> None:
        self.ctx, self.opt = ctx, opt
        self.student = ctx.backbone.train()
        self.optimizer = make_optimizer(self.student, opt.lr, opt.weight_decay)
        self.scheduler = cosine_schedule(self.optimizer, ctx.steps, round(opt.warmup_fraction * ctx.steps))
        self.per_epoch = max(1, math.ceil(ctx.num_train / ctx.batch_size))
        self.totals: dict[str, torch.Tensor] = {}  # on the device, read when logging

    def step(self, step: int, losses: dict[str, torch.Tensor]) -> None:
        loss = sum(getattr(self.opt, f"w_{term}") * value for term, value in losses.items())
        clip_and_step(loss, self.student, self.optimizer, self.scheduler, self.opt.max_grad_norm)
        for term, value in losses.items():
            self.totals[term] = self.totals.get(term, 0.0) + value.detach().double()
        if step % self.per_epoch == 0 or step == self.ctx.steps:
            count = self.per_epoch if step % self.per_epoch == 0 else step % self.per_epoch
            self.ctx.log(step=step, epoch=math.ceil(step / self.per_epoch),
                         **{f"loss_{t}": v / count for t, v in self.totals.items()})
            self.totals = {}


class _TeacherCache:
    """Teacher outputs per (train image, augmentation variant), each computed on first use and
    kept on the device; disabled (with a warning) if they would exceed the memory limit. Which
    entries are filled is tracked on the CPU, so a lookup never waits for the device."""

    def __init__(self, entries: int, device: torch.device, limit_bytes: float) -> None:
        self.entries, self.device, self.limit_bytes = entries, device, limit_bytes
        self.filled = torch.zeros(entries, dtype=torch.bool)
        self.store: ViTFeatures | None = None
        self.disabled = False

    @classmethod
    def create(cls, ctx: FitContext, variants: int, limit_gb: float) -> _TeacherCache:
        """A cache for ``ctx.num_train * variants`` entries of at most ``limit_gb``."""
        return cls(ctx.num_train * variants, ctx.device, limit_gb * 2**30)

    def fetch(self, keys: torch.Tensor, compute) -> ViTFeatures:
        """Targets for ``keys`` (CPU int64); ``compute(rows)`` gives the teacher's outputs for the
        batch rows ``rows`` (a device index tensor, or ``slice(None)`` for all)."""
        if self.disabled:
            return compute(slice(None))
        missing = ~self.filled[keys]
        if missing.any():
            fresh = compute(to_device(missing.nonzero().flatten(), self.device))
            if self.store is None and not self._allocate(fresh):
                self.disabled = True
                return compute(slice(None))
            slots = to_device(keys[missing], self.device)
            for target, value in zip(_tensors(self.store), _tensors(fresh)):
                target[slots] = value
            self.filled[keys[missing]] = True
        on_device = to_device(keys, self.device)
        return _map(self.store, lambda t: t[on_device])

    def _allocate(self, sample: ViTFeatures) -> bool:
        per_entry = sum(t[0].numel() * t.element_size() for t in _tensors(sample))
        if per_entry * self.entries > self.limit_bytes:
            logger.warning("the teacher cache would take %.2f GB (over teacher_cache_gb); running without it",
                           per_entry * self.entries / 2**30)
            return False
        self.store = _map(sample, lambda t: t.new_zeros((self.entries, *t.shape[1:])))
        return True


def _tensors(features: ViTFeatures) -> list[torch.Tensor]:
    return [features.cls, features.patches, *features.attentions.values(), *features.tokens.values()]


def _map(features: ViTFeatures, fn) -> ViTFeatures:
    return ViTFeatures(cls=fn(features.cls), patches=fn(features.patches),
                       attentions={k: fn(v) for k, v in features.attentions.items()},
                       tokens={k: fn(v) for k, v in features.tokens.items()})


def _teacher_features(teacher: nn.Module, clean: torch.Tensor, blocks: _Blocks) -> ViTFeatures:
    """The teacher's targets on clean images (only the attention rows the loss reads); a teacher
    in a low precision (:func:`_frozen_copy`) runs in it, outside any autocast."""
    dtype = next(teacher.parameters()).dtype
    plain = torch.autocast(clean.device.type, enabled=False) if dtype != clean.dtype else contextlib.nullcontext()
    # inference mode is cheaper than no_grad; the targets are copied out of it below
    with torch.inference_mode(), plain:
        target = extract_features(teacher, clean.to(dtype), attn_blocks=blocks.attn, token_blocks=blocks.earlier,
                                  attn_rows=blocks.rows)
    return _normal_tensors(target)


def _frozen_copy(model: nn.Module, dtype: torch.dtype | None = None) -> nn.Module:
    """The teacher: a copy in eval mode (in ``dtype``, if given) whose parameters never require
    gradients."""
    teacher = copy.deepcopy(model).eval()
    if dtype is not None:
        teacher.to(dtype)
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
