"""Dataset splits resized to the backbone's input size, cached as uint8 tensors.

A dataset plugin that reads files declares a ``fingerprint(root)`` of its sources (file names,
sizes and modification times); the decoded and resized splits are then kept in
``CACHE/datasets/<name>-<hash>.safetensors``, keyed by the plugin, its version, the sources and
the size, so a second run starts instantly and a changed source is never read from a stale cache.
Procedural and bundled datasets (no fingerprint) are built each time; they are fast.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import torch
import torch.nn.functional as F

from robench.api import Dataset
from robench.atomic import atomic_path

logger = logging.getLogger(__name__)

CACHE_VERSION = 1


def load_splits(
    dataset: Dataset, name: str, version: str | None, root: Path | None, size: tuple[int, int] | None,
    cache_dir: Path,
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """``{"train": (images, labels), "test": ...}`` at ``size`` (None: as the plugin gives them),
    from the cache when the plugin fingerprints its sources."""
    fingerprint = dataset.fingerprint(root)
    if fingerprint is None:
        return {split: _resized(*dataset.load(split, root), size) for split in ("train", "test")}
    key = hashlib.sha256(json.dumps(
        [CACHE_VERSION, name, version, str(root.resolve()) if root else None, fingerprint, size]
    ).encode()).hexdigest()[:16]
    path = cache_dir / "datasets" / f"{name}-{key}.safetensors"
    if path.is_file():
        from safetensors.torch import load_file

        logger.info("using cached %s splits %s", name, path)
        tensors = load_file(str(path))
        return {split: (tensors[f"{split}_images"], tensors[f"{split}_labels"]) for split in ("train", "test")}
    splits = {split: _resized(*dataset.load(split, root), size) for split in ("train", "test")}
    _save(path, splits)
    return splits


def resize_uint8(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Antialiased bilinear resize of uint8 ``(N, 3, H, W)`` images, in chunks, back to uint8."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images
    out = torch.empty(images.shape[0], images.shape[1], *size, dtype=torch.uint8)
    for start in range(0, images.shape[0], 512):
        chunk = images[start : start + 512].float()
        resized = F.interpolate(chunk, size=size, mode="bilinear", antialias=True, align_corners=False)
        out[start : start + 512] = resized.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _resized(images: torch.Tensor, labels: torch.Tensor, size: tuple[int, int] | None) -> tuple[torch.Tensor, torch.Tensor]:
    if size is None or images.dim() != 4:
        return images, labels
    return resize_uint8(images, size), labels


def _save(path: Path, splits: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    from safetensors.torch import save_file

    tensors = {}
    for split, (images, labels) in splits.items():
        tensors[f"{split}_images"] = images.contiguous()
        tensors[f"{split}_labels"] = labels.contiguous()
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp))
    logger.info("cached the splits as %s", path)
