"""Device-resident data: splits as uint8 tensors, seeded subsets, label budgets, distorted batches.

Images stay uint8 on the device until a batch is gathered; batches are index gathers followed by
batched augmentation and distortion. Every random choice is a function of explicit seeds:
subsets and label budgets of (seed, dataset), distorted pixels of (seed, dataset, split, sample
index, distortion, severity, draw) through :mod:`robench.rng`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from robench.rng import BatchRNG, derive_seed, sample_seeds

if TYPE_CHECKING:
    from robench.api import Distortion


@dataclass(frozen=True)
class Split:
    """One split of a dataset: uint8 images ``(N, 3, H, W)`` and int64 labels ``(N,)``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> Split:
        """The same split on another device."""
        return Split(self.images.to(device), self.labels.to(device))

    def subset(self, indices: torch.Tensor) -> Split:
        """The samples at ``indices``, in that order."""
        indices = indices.to(self.images.device)
        return Split(self.images[indices], self.labels[indices])


@dataclass(frozen=True)
class DatasetSplits:
    """A loaded dataset: name, class count, flip invariance, train and test splits."""

    name: str
    num_classes: int
    hflip: bool
    train: Split
    test: Split

    def to(self, device: torch.device | str) -> DatasetSplits:
        """The same dataset with both splits on ``device``."""
        return DatasetSplits(self.name, self.num_classes, self.hflip, self.train.to(device),
                             self.test.to(device))

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of the images."""
        return tuple(self.train.images.shape[-2:])  # type: ignore[return-value]


def stratified_subset(labels: torch.Tensor, count: int, seed: int) -> torch.Tensor:
    """Sorted indices of ``count`` samples with class proportions kept (largest remainder).

    Every class present keeps at least one sample when ``count`` allows it.
    """
    labels = labels.cpu()
    n = labels.numel()
    if count >= n:
        return torch.arange(n)
    classes, counts = torch.unique(labels, return_counts=True)
    quota = counts.double() * count / n
    take = torch.clamp(quota.floor().long(), min=1 if count >= len(classes) else 0)
    remainder = count - int(take.sum())
    if remainder > 0:
        order = torch.argsort(quota - quota.floor(), descending=True, stable=True)
        take[order[:remainder]] += 1
    elif remainder < 0:  # the at-least-one rule overshot: trim the largest classes
        order = torch.argsort(take, descending=True, stable=True)
        for i in order[: -remainder].tolist():
            take[i] -= 1
    gen = torch.Generator().manual_seed(seed)
    chosen = []
    for cls, k in zip(classes.tolist(), take.tolist()):
        members = torch.nonzero(labels == cls).flatten()
        chosen.append(members[torch.randperm(members.numel(), generator=gen)[:k]])
    return torch.sort(torch.cat(chosen)).values


def label_budget(labels: torch.Tensor, fraction: float, seed: int, dataset: str) -> torch.Tensor:
    """Sorted indices of the labelled subset of a train split: ``ceil(fraction * N)`` samples,
    stratified by class, drawn from (seed, dataset) so every method gets the same labels."""
    count = max(1, math.ceil(fraction * labels.numel()))
    return stratified_subset(labels, count, derive_seed("label-budget", seed, dataset))


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images to float32 in [0, 1]: exactly k / 255 on every device (CUDA divides by a
    Python scalar as a multiplication by its reciprocal, one bit off; by a tensor it divides)."""
    return images.to(torch.float32).div_(torch.full((), 255.0, device=images.device))


def augment_geometric(
    images: torch.Tensor, rng: BatchRNG, pad: int = 4, hflip: bool = True
) -> torch.Tensor:
    """Random translation (reflect-pad by ``pad`` and crop) and optional horizontal flip.

    One gather for the whole batch, in the images' dtype (uint8 works: 4x less memory traffic
    than float), with per-sample draws from ``rng`` (on any device; moved to the images').
    """
    b, _, h, w = images.shape
    device = images.device
    shifts = to_device(rng.integers(0, 2 * pad + 1, 2), device) - pad
    rows = _reflect(shifts[:, 0:1] + torch.arange(h, device=device), h)
    cols = _reflect(shifts[:, 1:2] + torch.arange(w, device=device), w)
    if hflip:
        flip = to_device(rng.uniform(1) < 0.5, device)
        cols = torch.where(flip, cols.flip(1), cols)
    batch = torch.arange(b, device=device)[:, None, None]
    out = images.permute(0, 2, 3, 1)[batch, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _reflect(position: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of reflect padding (edge not repeated), for positions within one pad of the image."""
    position = position.abs()
    return torch.where(position >= size, 2 * (size - 1) - position, position)


def to_device(values: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``values`` on ``device``; a CPU tensor goes to CUDA asynchronously, from pinned memory (a
    plain copy from pageable memory would wait for all the work queued on the device)."""
    device = torch.device(device)
    if values.device.type != "cpu" or device.type != "cuda":
        return values.to(device)
    return values.pin_memory().to(device, non_blocking=True)


def distortion_seeds(
    seed: int, dataset: str, split: str, distortion: str, severity: int, indices: torch.Tensor,
    draw: int = 0,
) -> torch.Tensor:
    """Per-sample seeds of distorted pixels: a function of (seed, dataset, split, sample index,
    distortion, severity, draw) only, so every method sees identical pixels."""
    base = derive_seed("distort", seed, dataset, split, distortion, severity, draw)
    return sample_seeds(base, indices)


def distort_mixed(
    distortion: Distortion, images: torch.Tensor, severities: torch.Tensor, seeds: torch.Tensor
) -> torch.Tensor:
    """Apply ``distortion`` with a severity per sample (:meth:`Distortion.call_mixed`).

    With ``severities`` and ``seeds`` on the CPU this needs no device synchronisation.
    """
    return distortion.call_mixed(images, severities, BatchRNG(to_device(seeds, images.device)))


def iterate_chunks(count: int, chunk: int) -> list[slice]:
    """Consecutive slices covering ``range(count)`` in pieces of at most ``chunk``."""
    return [slice(i, min(i + chunk, count)) for i in range(0, count, chunk)]
