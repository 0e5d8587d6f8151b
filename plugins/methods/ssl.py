"""Self-supervised learning on distorted images: DINO-style self-distillation (Caron, Touvron,
Misra, Jegou, Mairal, Bojanowski & Joulin, 2021, "Emerging Properties in Self-Supervised Vision
Transformers", ICCV), without labels and without clean images.

A student ViT with a projection head learns to predict, from every augmented view of a distorted
image, the centred and sharpened output of an EMA teacher on the two global views. It runs in one
process and never calls a collective operation (no process group needed). Local views are
smaller crops resized back to the input size (the ViT keeps one input size).
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
    autocast,
    clip_and_step,
    cosine_schedule,
    hookimpl,
    make_optimizer,
    to_device,
)
from robench_plugins.distortions._color import grayscale


@dataclass(frozen=True)
class DINOOptions:
    """Hyper-parameters of DINO (the paper's ViT-S defaults, scaled down for small ViTs).

    Attributes:
        out_dim, hidden_dim, bottleneck_dim: projection head sizes (3-layer MLP, L2-normalised
            bottleneck, weight-normalised last layer with fixed norm).
        global_views, local_views: views per image (two global views feed the teacher).
        global_scale, local_scale: area ranges of the random resized crops.
        student_temp, teacher_temp: softmax temperatures (sharpening is teacher_temp < student_temp).
        center_momentum: EMA momentum of the teacher-output centre.
        teacher_momentum: EMA momentum of the teacher at the start; it follows a cosine to 1.
        return_teacher: return the teacher's backbone (as DINO evaluates) rather than the student's.
        lr, weight_decay, warmup_fraction, max_grad_norm: the shared AdamW recipe.
    """

    out_dim: int = 4096
    hidden_dim: int = 512
    bottleneck_dim: int = 128
    global_views: int = 2
    local_views: int = 0
    global_scale: tuple[float, float] = (0.4, 1.0)
    local_scale: tuple[float, float] = (0.05, 0.4)
    student_temp: float = 0.1
    teacher_temp: float = 0.04
    center_momentum: float = 0.9
    teacher_momentum: float = 0.996
    return_teacher: bool = True
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    max_grad_norm: float | None = 3.0

    def __post_init__(self) -> None:
        if self.global_views < 2 or self.local_views < 0:
            raise ValueError("at least 2 global views and >= 0 local views are required")
        if not 0 <= self.teacher_momentum <= 1 or not 0 <= self.center_momentum <= 1:
            raise ValueError("momenta must be in [0, 1]")


class DINOHead(nn.Module):
    """DINO's projection head: MLP to a bottleneck, L2 normalisation, weight-normalised output
    layer whose weight norm is fixed to 1 (the paper's ``norm_last_layer``)."""

    def __init__(self, in_dim: int, out_dim: int, hidden_dim: int, bottleneck_dim: int) -> None:
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden_dim), nn.GELU(), nn.Linear(hidden_dim, hidden_dim), nn.GELU(),
            nn.Linear(hidden_dim, bottleneck_dim),
        )
        self.last = nn.Parameter(torch.empty(out_dim, bottleneck_dim))
        nn.init.trunc_normal_(self.last, std=0.02)
        for layer in self.mlp:
            if isinstance(layer, nn.Linear):
                nn.init.trunc_normal_(layer.weight, std=0.02)
                nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.normalize(self.mlp(x), dim=-1)
        return F.linear(x, F.normalize(self.last, dim=1))


class DINOTrainer:
    """Student, EMA teacher, centre and optimiser of one DINO run; :meth:`step` trains on one
    batch of views."""

    def __init__(self, backbone: nn.Module, options: DINOOptions, total_steps: int, device: torch.device) -> None:
        self.options = options
        self.total_steps = total_steps
        width = backbone.num_features
        self.student = nn.ModuleDict({
            "backbone": backbone,
            "head": DINOHead(width, options.out_dim, options.hidden_dim, options.bottleneck_dim),
        }).to(device).train()
        self.teacher = copy.deepcopy(self.student).eval()
        for param in self.teacher.parameters():
            param.requires_grad_(False)
        self.center = torch.zeros(1, options.out_dim, device=device)
        self.optimizer = make_optimizer(self.student, options.lr, options.weight_decay)
        self.scheduler = cosine_schedule(self.optimizer, total_steps, round(options.warmup_fraction * total_steps))
        self.device = device
        self.steps_done = 0

    def step(self, views: list[torch.Tensor]) -> torch.Tensor:
        """One optimiser step on ``views`` (global views first), then the teacher's EMA update;
        returns the loss (detached, on the device)."""
        opt = self.options
        n_global = opt.global_views
        with autocast(self.device):
            student_out = self._forward(self.student, torch.cat(views)).float()
            with torch.no_grad():
                teacher_out = self._forward(self.teacher, torch.cat(views[:n_global])).float()
        loss = dino_loss(student_out, teacher_out, self.center, len(views), n_global,
                         opt.student_temp, opt.teacher_temp)
        value = clip_and_step(loss, self.student, self.optimizer, self.scheduler, opt.max_grad_norm)
        self.center = update_center(self.center, teacher_out, opt.center_momentum)
        ema_update(self.teacher, self.student, self.momentum())
        self.steps_done += 1
        return value

    def momentum(self) -> float:
        """Teacher EMA momentum for the step just taken: cosine from the start value to 1."""
        progress = self.steps_done / max(1, self.total_steps)
        start = self.options.teacher_momentum
        return 1 - (1 - start) * (math.cos(math.pi * progress) + 1) / 2

    @staticmethod
    def _forward(model: nn.ModuleDict, images: torch.Tensor) -> torch.Tensor:
        return model["head"](model["backbone"].forward_features(images)[:, 0])


def dino_loss(
    student_out: torch.Tensor, teacher_out: torch.Tensor, center: torch.Tensor, n_views: int,
    n_global: int, student_temp: float, teacher_temp: float,
) -> torch.Tensor:
    """Cross-entropy between the centred, sharpened teacher distribution of each global view and
    the student distribution of every other view, averaged over pairs (DINO's loss)."""
    student = (student_out / student_temp).chunk(n_views)
    teacher = F.softmax((teacher_out - center) / teacher_temp, dim=-1).detach().chunk(n_global)
    total, pairs = 0.0, 0
    for t_index, target in enumerate(teacher):
        for s_index, prediction in enumerate(student):
            if s_index == t_index:
                continue
            total = total + torch.sum(-target * F.log_softmax(prediction, dim=-1), dim=-1).mean()
            pairs += 1
    return total / pairs


@torch.no_grad()
def update_center(center: torch.Tensor, teacher_out: torch.Tensor, momentum: float) -> torch.Tensor:
    """EMA of the teacher's mean output (this process's batch; no collective operation)."""
    return center * momentum + teacher_out.mean(0, keepdim=True) * (1 - momentum)


@torch.no_grad()
def ema_update(teacher: nn.Module, student: nn.Module, momentum: float) -> None:
    """teacher <- momentum * teacher + (1 - momentum) * student, parameter by parameter."""
    for t, s in zip(teacher.parameters(), student.parameters()):
        t.mul_(momentum).add_(s.detach(), alpha=1 - momentum)


class SelfSupervised(Method):
    """DINO self-distillation on distorted images only: no labels, no clean images."""

    name = "ssl"
    Options = DINOOptions

    def fit(self, ctx: FitContext) -> nn.Module:
        opt = self.options
        trainer = DINOTrainer(ctx.backbone, opt, ctx.steps, ctx.device)
        gen = ctx.generator("dino-views")
        log_every = max(1, ctx.steps // 10)
        running = 0.0
        for step, batch in enumerate(ctx.batches(), start=1):
            views = dino_views(batch.images, gen, opt)
            running += trainer.step(views).double()
            if step % log_every == 0 or step == ctx.steps:
                ctx.log(step=step, loss=running / (step % log_every or log_every),
                        teacher_momentum=trainer.momentum())
                running = 0.0
        model = trainer.teacher if opt.return_teacher else trainer.student
        return model["backbone"].eval()


def dino_views(images: torch.Tensor, gen: torch.Generator, options: DINOOptions) -> list[torch.Tensor]:
    """DINO's augmented views of a batch: global then local random resized crops, with flips,
    colour jitter (p 0.8), greyscale (p 0.2), Gaussian blur (p 1.0 / 0.1 / 0.5 for the first,
    second and other views) and solarisation (p 0.2, second view)."""
    views = []
    total = options.global_views + options.local_views
    for index in range(total):
        scale = options.global_scale if index < options.global_views else options.local_scale
        x = _resized_crop(images, scale, gen)
        x = _colour_jitter(x, gen, p=0.8)
        x = _greyscale(x, gen, p=0.2)
        x = _blur(x, gen, p=(1.0, 0.1)[index] if index < 2 else 0.5)
        if index == 1:
            x = _solarize(x, gen, p=0.2)
        views.append(x)
    return views


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    """Draws from the host generator, sent without making the host wait for the device."""
    return to_device(low + (high - low) * torch.rand(n, generator=gen), device)


def _resized_crop(x: torch.Tensor, scale: tuple[float, float], gen: torch.Generator) -> torch.Tensor:
    """Random area fraction in ``scale``, aspect ratio in [3/4, 4/3] (log-uniform), random
    position and horizontal flip, resampled bilinearly to the input size."""
    b = x.shape[0]
    area = _uniform(b, *scale, gen, x.device)
    ratio = torch.exp(_uniform(b, math.log(3 / 4), math.log(4 / 3), gen, x.device))
    width = torch.sqrt(area * ratio).clamp(max=1.0)
    height = torch.sqrt(area / ratio).clamp(max=1.0)
    cx = (_uniform(b, 0, 1, gen, x.device) * (1 - width) + width / 2) * 2 - 1
    cy = (_uniform(b, 0, 1, gen, x.device) * (1 - height) + height / 2) * 2 - 1
    flip = torch.where(_uniform(b, 0, 1, gen, x.device) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = width * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = height, cy
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _colour_jitter(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """Brightness 0.4, contrast 0.4, saturation 0.2 (DINO's strengths), applied with prob. p."""
    b = x.shape[0]
    apply = (_uniform(b, 0, 1, gen, x.device) < p).view(b, 1, 1, 1)
    brightness = _uniform(b, 0.6, 1.4, gen, x.device).view(b, 1, 1, 1)
    contrast = _uniform(b, 0.6, 1.4, gen, x.device).view(b, 1, 1, 1)
    saturation = _uniform(b, 0.8, 1.2, gen, x.device).view(b, 1, 1, 1)
    y = (x * brightness).clamp(0, 1)
    grey = grayscale(y)
    y = (grey.mean((2, 3), keepdim=True) + contrast * (y - grey.mean((2, 3), keepdim=True))).clamp(0, 1)
    y = (grayscale(y) + saturation * (y - grayscale(y))).clamp(0, 1)
    return torch.where(apply, y, x)


def _greyscale(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    apply = (_uniform(x.shape[0], 0, 1, gen, x.device) < p).view(-1, 1, 1, 1)
    return torch.where(apply, grayscale(x).expand_as(x), x)


def _blur(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    """Gaussian blur with sigma ~ U(0.1, 2) per image (a per-image kernel, grouped convolution)."""
    b, c, h, w = x.shape
    apply = (_uniform(b, 0, 1, gen, x.device) < p).view(b, 1, 1, 1)
    sigma = _uniform(b, 0.1, 2.0, gen, x.device)
    offsets = torch.arange(-6, 7, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (offsets[None] / sigma[:, None]) ** 2)
    kernel = (kernel / kernel.sum(1, keepdim=True)).repeat_interleave(c, 0)  # (B*C, 13)
    y = F.pad(x.reshape(1, b * c, h, w), (6, 6, 0, 0), mode="replicate")
    y = F.conv2d(y, kernel.view(b * c, 1, 1, 13), groups=b * c)
    y = F.pad(y, (0, 0, 6, 6), mode="replicate")
    y = F.conv2d(y, kernel.view(b * c, 1, 13, 1), groups=b * c).view(b, c, h, w)
    return torch.where(apply, y, x)


def _solarize(x: torch.Tensor, gen: torch.Generator, p: float) -> torch.Tensor:
    apply = (_uniform(x.shape[0], 0, 1, gen, x.device) < p).view(-1, 1, 1, 1)
    return torch.where(apply & (x >= 0.5), 1 - x, x)


@hookimpl
def robench_methods() -> list[type[Method]]:
    return [SelfSupervised]
