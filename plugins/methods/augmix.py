"""AugMix (Hendrycks, Mu, Cubuk, Zoph, Gilmer & Lakshminarayanan, 2020, "AugMix: A Simple Data
Processing Method to Improve Robustness and Uncertainty", ICLR), batched on the device.

Each image gets ``width`` chains of 1-3 random operations; the chains are mixed with Dirichlet
weights and the mix is blended with the image by a Beta-distributed factor. Training minimises
cross-entropy on the un-augmented image plus ``jsd_weight`` times the Jensen-Shannon divergence
between the predictions for the image and for two independent AugMix views of it.

As AugMix is used in practice, it trains on clean labelled images by default (it declares clean
images and labels); the ``distorted`` preset (``augmix:distorted``) trains on the distorted images
instead and then uses no clean image.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
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
    to_device,
)
from robench_plugins.methods._augmix_ops import OPERATIONS, OVERLAPPING, apply_operations


@dataclass(frozen=True)
class AugMixOptions:
    """Hyper-parameters of AugMix (defaults of the paper's CIFAR setting).

    Attributes:
        severity: operation strength; each operation draws its level from U(0.1, severity), of 10.
        width: augmentation chains mixed per view.
        depth: operations per chain; -1 draws 1-3 per chain.
        alpha: Dirichlet (chain weights) and Beta (blend with the image) concentration.
        jsd_weight: weight of the Jensen-Shannon consistency loss; 0 trains on one AugMix view
            with cross-entropy only.
        all_operations: also use color, contrast, brightness and sharpness, which overlap the
            test corruptions (off in the paper).
        on_distorted: train on the distorted images instead of the clean ones.
        lr, weight_decay, warmup_fraction, max_grad_norm: the shared AdamW recipe.
    """

    severity: int = 3
    width: int = 3
    depth: int = -1
    alpha: float = 1.0
    jsd_weight: float = 12.0
    all_operations: bool = False
    on_distorted: bool = False
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    max_grad_norm: float | None = 1.0

    def __post_init__(self) -> None:
        if not 1 <= self.severity <= 10:
            raise ValueError(f"severity {self.severity}: valid 1-10")
        if self.width < 1 or self.depth == 0 or self.depth < -1 or self.alpha <= 0 or self.jsd_weight < 0:
            raise ValueError("width >= 1, depth -1 or >= 1, alpha > 0 and jsd_weight >= 0 are required")


class AugMix(Method):
    """AugMix with the Jensen-Shannon consistency loss on labelled images (clean by default)."""

    name = "augmix"
    uses_labels = True
    uses_clean_images = True  # as declared by the default; the instance says what it really uses
    Options = AugMixOptions
    presets = {"distorted": {"on_distorted": True}}

    def __init__(self, options: AugMixOptions | None = None) -> None:
        super().__init__(options)
        self.uses_clean_images = not self.options.on_distorted

    def fit(self, ctx: FitContext) -> nn.Module:
        opt = self.options
        model = ctx.backbone.train()
        forward = ctx.compiled(model)  # torch.compile under --compile
        optimizer = make_optimizer(model, opt.lr, opt.weight_decay)
        scheduler = cosine_schedule(optimizer, ctx.steps, round(opt.warmup_fraction * ctx.steps))
        gen = ctx.generator("augmix")
        views = 2 if opt.jsd_weight > 0 else 1
        log_every = max(1, ctx.steps // 10)
        totals = {"ce": 0.0, "jsd": 0.0}
        for step, batch in enumerate(ctx.batches(labelled=True, clean=not opt.on_distorted), start=1):
            images = batch.images if opt.on_distorted else batch.clean
            mixed = [augment_and_mix(images, gen, opt) for _ in range(views)]
            with autocast(ctx.device):
                logits = forward(torch.cat([images, *mixed]) if views == 2 else mixed[0]).float()
            ce, jsd = self.losses(logits, batch.labels, views)
            clip_and_step(ce + opt.jsd_weight * jsd, model, optimizer, scheduler, opt.max_grad_norm)
            totals["ce"] += ce.detach().double()  # read when logging: no per-step device sync
            totals["jsd"] += jsd.detach().double()
            if step % log_every == 0 or step == ctx.steps:
                count = step % log_every or log_every
                ctx.log(step=step, loss=(totals["ce"] + opt.jsd_weight * totals["jsd"]) / count,
                        loss_ce=totals["ce"] / count, loss_jsd=totals["jsd"] / count)
                totals = {"ce": 0.0, "jsd": 0.0}
        return model.eval()

    @staticmethod
    def losses(logits: torch.Tensor, labels: torch.Tensor, views: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy on the first chunk of ``logits`` and the JSD across the chunks."""
        if views == 1:
            return F.cross_entropy(logits, labels), logits.new_zeros(())
        clean, first, second = logits.chunk(3)
        return F.cross_entropy(clean, labels), jensen_shannon(clean, first, second)


def jensen_shannon(*logits: torch.Tensor) -> torch.Tensor:
    """AugMix's consistency loss: mean KL(p_i || M) of each prediction p_i to their mixture M."""
    probs = [F.softmax(x, dim=1) for x in logits]
    log_mixture = torch.clamp(sum(probs) / len(probs), 1e-7, 1).log()
    return sum(F.kl_div(log_mixture, p, reduction="batchmean") for p in probs) / len(probs)


def augment_and_mix(
    images: torch.Tensor, gen: torch.Generator, options: AugMixOptions, return_parts: bool = False
):
    """One AugMix view per image: ``(1 - m) * x + m * sum_i w_i * chain_i(x)``.

    ``w ~ Dirichlet(alpha)`` over the chains, ``m ~ Beta(alpha, alpha)``, per image. With
    ``return_parts``, also returns the chains ``(width, B, 3, H, W)``, ``w`` ``(B, width)`` and ``m``.
    """
    b = images.shape[0]
    names = OPERATIONS + (OVERLAPPING if options.all_operations else ())
    # every draw is made on the host and sent without making the host wait for the device
    weights = to_device(_dirichlet(b, options.width, options.alpha, gen), images.device)
    blend = to_device(_beta(b, options.alpha, gen), images.device)
    chains = torch.stack([_chain(images, gen, options, names) for _ in range(options.width)])
    mix = (weights.T[:, :, None, None, None] * chains).sum(0)
    mixed = (1 - blend.view(b, 1, 1, 1)) * images + blend.view(b, 1, 1, 1) * mix
    return (mixed, chains, weights, blend) if return_parts else mixed


def _chain(images: torch.Tensor, gen: torch.Generator, options: AugMixOptions, names: tuple[str, ...]) -> torch.Tensor:
    b = images.shape[0]
    depth = torch.randint(1, 4, (b,), generator=gen) if options.depth == -1 else torch.full((b,), options.depth)
    x = images
    for position in range(3 if options.depth == -1 else options.depth):  # draws stay on the host
        ops = torch.randint(0, len(names), (b,), generator=gen)
        levels = 0.1 + torch.rand(b, generator=gen) * (options.severity - 0.1)
        signs = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
        x = apply_operations(x, ops, levels, signs, names, active=depth > position)
    return x


def _gamma(shape: tuple[int, ...], alpha: float, gen: torch.Generator) -> torch.Tensor:
    """Gamma(alpha, 1) samples drawn reproducibly from ``gen`` (torch's gamma takes no generator)."""
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return torch._standard_gamma(torch.full(shape, float(alpha)))


def _dirichlet(batch: int, width: int, alpha: float, gen: torch.Generator) -> torch.Tensor:
    g = _gamma((batch, width), alpha, gen)
    return g / g.sum(1, keepdim=True)


def _beta(batch: int, alpha: float, gen: torch.Generator) -> torch.Tensor:
    g = _gamma((batch, 2), alpha, gen)
    return g[:, 0] / g.sum(1)


@hookimpl
def robench_methods() -> list[type[Method]]:
    return [AugMix]
