"""Seeded subsets, label budgets, geometric augmentation, per-sample distortion seeds."""

from __future__ import annotations

import math

import pytest
import torch

from robench.data import (
    augment_geometric,
    distortion_seeds,
    label_budget,
    stratified_subset,
)
from robench.rng import BatchRNG, sample_seeds

LABELS = torch.tensor([0] * 50 + [1] * 30 + [2] * 20)


@pytest.mark.parametrize("count", [1, 3, 10, 37, 99, 100, 500])
def test_stratified_subset_size_and_proportions(count: int) -> None:
    chosen = stratified_subset(LABELS, count, seed=0)
    assert chosen.numel() == min(count, 100) and chosen.unique().numel() == chosen.numel()
    assert torch.equal(chosen, chosen.sort().values)
    if count >= 3:
        counts = torch.bincount(LABELS[chosen], minlength=3)
        assert (counts >= 1).all()
        expected = torch.tensor([0.5, 0.3, 0.2]) * min(count, 100)
        assert (counts - expected).abs().max() <= 1.0 + 1e-9


def test_label_budget_is_ceil_fraction_and_seeded() -> None:
    budget = label_budget(LABELS, 0.1, seed=0, dataset="d")
    assert budget.numel() == math.ceil(0.1 * 100)
    assert torch.equal(budget, label_budget(LABELS, 0.1, seed=0, dataset="d"))
    assert not torch.equal(budget, label_budget(LABELS, 0.1, seed=1, dataset="d"))
    assert label_budget(LABELS, 1.0, seed=0, dataset="d").numel() == 100
    assert label_budget(LABELS, 1e-6, seed=0, dataset="d").numel() == 1


def test_augmentation_translates_and_flips_per_sample() -> None:
    images = torch.rand(6, 3, 8, 8)
    rng_seeds = sample_seeds(0, torch.arange(6))
    same = augment_geometric(images, BatchRNG(rng_seeds), pad=0, hflip=False)
    assert torch.equal(same, images)
    moved = augment_geometric(images, BatchRNG(rng_seeds), pad=2, hflip=True)
    again = augment_geometric(images[[3]], BatchRNG(rng_seeds[[3]]), pad=2, hflip=True)
    assert torch.equal(moved[[3]], again)
    # every output is a shifted, possibly mirrored window of its reflect-padded input
    padded = torch.nn.functional.pad(images, (2, 2, 2, 2), mode="reflect")
    for i in range(6):
        windows = [padded[i, :, r:r + 8, c:c + 8] for r in range(5) for c in range(5)]
        assert any(torch.equal(moved[i], w) or torch.equal(moved[i], w.flip(-1)) for w in windows)


def test_distortion_seeds_depend_on_every_part() -> None:
    idx = torch.arange(5)
    base = distortion_seeds(0, "digits", "test", "gaussian_noise", 3, idx)
    assert torch.equal(base, distortion_seeds(0, "digits", "test", "gaussian_noise", 3, idx))
    for changed in [
        distortion_seeds(1, "digits", "test", "gaussian_noise", 3, idx),
        distortion_seeds(0, "shapes", "test", "gaussian_noise", 3, idx),
        distortion_seeds(0, "digits", "train", "gaussian_noise", 3, idx),
        distortion_seeds(0, "digits", "test", "gaussian_blur", 3, idx),
        distortion_seeds(0, "digits", "test", "gaussian_noise", 4, idx),
        distortion_seeds(0, "digits", "test", "gaussian_noise", 3, idx + 1),
    ]:
        assert not (changed == base).any()
    assert torch.equal(distortion_seeds(0, "digits", "test", "gaussian_noise", 3, idx[[2]]), base[[2]])
