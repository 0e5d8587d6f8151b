"""Clean pretraining: the starting backbone when the user gives no weights.

The seed paper starts teacher and student from one pretrained ViT. Without a checkpoint, robench
trains the backbone supervised on the clean train split of the dataset, a stand-in for a hub
checkpoint, and caches it under a hash of everything that determines it (backbone, dataset and
its pixels, recipe, code version), so the next run, or another method, starts from the same file.

Note the stand-in sees every clean train label; for a label budget that is strict about what
the backbone saw, pass a checkpoint trained elsewhere with ``--weights``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from robench.api import Distortion
from robench.atomic import write_text
from robench.backbone import BackboneSpec, create_backbone, file_digest, load_weights, save_weights
from robench.context import FitContext
from robench.data import DatasetSplits, augment_geometric, to_float
from robench.errors import ConfigError
from robench.registry import Registry
from robench.rng import BatchRNG, derive_seed, sample_seeds
from robench.training import autocast, clip_and_step, cosine_schedule, make_optimizer

logger = logging.getLogger(__name__)

# Bump when the pretraining code changes what it produces, so stale cache entries are not reused.
PRETRAIN_CODE_VERSION = 3


PRETRAIN_MODES = ("supervised", "dino")
TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class PretrainConfig:
    """Recipe of the clean pretraining: ``supervised`` (AdamW, warmup + cosine, label smoothing)
    or ``dino`` (the ``ssl`` method's self-distillation, no labels)."""

    mode: str = "supervised"
    epochs: int = 50
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.1
    seed: int = 0


def default_cache_dir() -> Path:
    """``$ROBENCH_CACHE``, else ``$XDG_CACHE_HOME/robench``, else ``~/.cache/robench``."""
    if os.environ.get("ROBENCH_CACHE"):
        return Path(os.environ["ROBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "robench"


def initial_backbone(
    spec: BackboneSpec,
    data: DatasetSplits,
    weights: str | Path | None,
    config: PretrainConfig,
    cache_dir: Path,
    device: torch.device,
    show_progress: bool = False,
    registry: Registry | None = None,
) -> tuple[nn.Module, str]:
    """The backbone every method of a dataset starts from, and an identifier of its weights.

    From ``weights`` if given (a local file, or ``timm:<model.tag>`` through timm's hub), else
    from robench's clean pretraining (``config.mode``: supervised, or DINO through the registered
    ``ssl`` method on clean images), cached under a hash of everything that determines it.
    """
    if isinstance(weights, str) and weights.startswith(TIMM_PREFIX):
        return _timm_weights(spec, weights[len(TIMM_PREFIX):], data.num_classes).to(device).eval(), str(weights)
    model = create_backbone(spec, data.num_classes, seed=config.seed)
    if weights is not None:
        path = Path(weights)
        load_weights(model, path)
        return model.to(device).eval(), f"file:{path.name}@{file_digest(path)}"
    key = pretrain_key(spec, data, config)
    path = cache_dir / "pretrain" / f"{data.name}-{key}.safetensors"
    if path.is_file():
        logger.info("using cached pretrained backbone %s", path)
        load_weights(model, path, source="pretraining cache")
    else:
        logger.info("pretraining %s (%s) on clean %s (cached as %s)", spec.label, config.mode, data.name, path)
        started = time.perf_counter()
        if config.mode == "dino":
            accuracy = None
            _train_dino(model.to(device), data, config, device, show_progress, registry or Registry())
        else:
            accuracy = _train(model.to(device), data, config, device, show_progress)
        save_weights(model, path)
        meta = {
            "backbone": dataclasses.asdict(spec),
            "dataset": data.name,
            "config": dataclasses.asdict(config),
            "train_accuracy_last_epoch": accuracy,
            "seconds": round(time.perf_counter() - started, 1),
        }
        write_text(path.with_suffix(".json"), json.dumps(meta, indent=2) + "\n")
    return model.to(device).eval(), f"robench-{config.mode}:{key}"


def _timm_weights(spec: BackboneSpec, tag: str, num_classes: int) -> nn.Module:
    """A pretrained timm model (hub access happens here, and only here); the classifier head is
    re-initialised for ``num_classes`` and the position embedding resampled to the input size."""
    import timm

    try:
        return timm.create_model(tag, pretrained=True, num_classes=num_classes, **spec.overrides())
    except (RuntimeError, OSError, ValueError) as exc:
        raise ConfigError(f"cannot load timm weights {tag!r} (from --weights): {str(exc).splitlines()[0]}; "
                          "timm: weights come from the Hugging Face hub and need network access") from None


class _Clean(Distortion):
    """No distortion (pretraining sees clean images)."""

    name = "clean"
    severities = (1,)

    def apply(self, images: torch.Tensor, severity: int, rng) -> torch.Tensor:
        return images


def _train_dino(model: nn.Module, data: DatasetSplits, cfg: PretrainConfig, device: torch.device,
                show_progress: bool, registry: Registry) -> None:
    """DINO on the clean train split, through the registered ``ssl`` method (no labels used)."""
    method = registry.get("method", "ssl", "--pretrain dino")()
    train = data.train.to(device)
    steps = cfg.epochs * max(1, len(train) // min(cfg.batch_size, len(train)))
    nothing = torch.empty(0, dtype=torch.int64)
    ctx = FitContext(
        method=method, backbone=model, train_images=train.images, labelled_indices=nothing,
        labelled_labels=nothing, num_classes=data.num_classes, hflip=data.hflip, distortion=_Clean(),
        severities=(1,), dataset=data.name, label_fraction=0.0, seed=cfg.seed, steps=steps,
        batch_size=cfg.batch_size, device=device, show_progress=show_progress,
    )
    trained = method.fit(ctx)
    model.load_state_dict(trained.state_dict())


def pretrain_key(spec: BackboneSpec, data: DatasetSplits, config: PretrainConfig) -> str:
    """16 hex digits identifying a pretraining: backbone, dataset pixels and labels, recipe."""
    sha = hashlib.sha256()
    sha.update(json.dumps({
        "code": PRETRAIN_CODE_VERSION,
        "backbone": dataclasses.asdict(spec),
        "dataset": data.name,
        "hflip": data.hflip,
        "num_classes": data.num_classes,
        "config": dataclasses.asdict(config),
    }, sort_keys=True).encode())
    sha.update(data.train.images.cpu().contiguous().numpy().tobytes())
    sha.update(data.train.labels.cpu().contiguous().numpy().tobytes())
    return sha.hexdigest()[:16]


def _train(
    model: nn.Module, data: DatasetSplits, cfg: PretrainConfig, device: torch.device, show_progress: bool
) -> float:
    """Supervised training on clean augmented images; returns the last epoch's train accuracy."""
    train = data.train.to(device)
    n = len(train)
    batch_size = min(cfg.batch_size, n)
    steps_per_epoch = max(1, n // batch_size)
    total = cfg.epochs * steps_per_epoch
    optimizer = make_optimizer(model, cfg.lr, cfg.weight_decay)
    scheduler = cosine_schedule(optimizer, total, round(cfg.warmup_fraction * total))
    gen = torch.Generator().manual_seed(derive_seed("pretrain-order", cfg.seed, data.name))
    model.train()
    progress = tqdm(total=total, desc=f"pretrain {data.name}", unit="step", leave=False,
                    disable=not show_progress)
    correct, seen = 0, 0
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=gen).to(device)
        correct, seen = 0, 0
        for step in range(steps_per_epoch):
            idx = order[step * batch_size : (step + 1) * batch_size]
            base = derive_seed("pretrain-augment", cfg.seed, data.name, epoch, step)
            images = to_float(augment_geometric(train.images[idx], BatchRNG(sample_seeds(base, idx)),
                                                hflip=data.hflip))
            with autocast(device):
                logits = model(images)
            loss = F.cross_entropy(logits.float(), train.labels[idx], label_smoothing=cfg.label_smoothing)
            clip_and_step(loss, model, optimizer, scheduler)
            correct += (logits.argmax(1) == train.labels[idx]).sum()
            seen += idx.numel()
            progress.update()
        logger.debug("pretrain epoch %d: train accuracy %.3f", epoch + 1, float(correct) / seen)
    progress.close()
    model.eval()
    return float(correct) / max(1, seen)
