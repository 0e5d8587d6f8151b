"""augmix: convex mixes of augmented chains, the JSD consistency term, declared supervision."""

from __future__ import annotations

import pytest
import torch

from robench_plugins.methods._augmix_ops import OPERATIONS, OVERLAPPING, apply_operations
from robench_plugins.methods.augmix import AugMix, AugMixOptions, augment_and_mix, jensen_shannon


def images(n: int = 6) -> torch.Tensor:
    return (torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n)) * 255).round() / 255


def test_mixed_images_are_convex_combinations_of_the_chains() -> None:
    x = images()
    mixed, chains, weights, blend = augment_and_mix(x, torch.Generator().manual_seed(0), AugMixOptions(),
                                                    return_parts=True)
    assert chains.shape == (3, 6, 3, 32, 32)
    assert (weights >= 0).all() and torch.allclose(weights.sum(1), torch.ones(6))
    assert ((blend >= 0) & (blend <= 1)).all()
    expected = (1 - blend.view(-1, 1, 1, 1)) * x + blend.view(-1, 1, 1, 1) * (weights.T[:, :, None, None, None] * chains).sum(0)
    torch.testing.assert_close(mixed, expected)
    # a convex combination stays between the smallest and largest of its parts, pixel by pixel
    parts = torch.cat([x[None], chains])
    assert (mixed >= parts.amin(0) - 1e-6).all() and (mixed <= parts.amax(0) + 1e-6).all()
    assert not torch.equal(mixed, x)


def test_chains_use_only_the_non_overlapping_operations_by_default() -> None:
    assert set(OPERATIONS) == {"autocontrast", "equalize", "posterize", "rotate", "solarize",
                               "shear_x", "shear_y", "translate_x", "translate_y"}
    assert not set(OVERLAPPING) & set(OPERATIONS)


@pytest.mark.parametrize("name", OPERATIONS + OVERLAPPING)
def test_each_operation_changes_images_and_stays_in_range(name: str) -> None:
    x = images(4)
    names = OPERATIONS + OVERLAPPING
    ops = torch.full((4,), names.index(name))
    out = apply_operations(x, ops, torch.full((4,), 3.0), torch.ones(4), names, torch.ones(4, dtype=torch.bool))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 1
    assert not torch.equal(out, x), name
    untouched = apply_operations(x, ops, torch.full((4,), 3.0), torch.ones(4), names, torch.zeros(4, dtype=torch.bool))
    assert torch.equal(untouched, x)


def test_jsd_is_zero_for_identical_predictions_and_positive_otherwise() -> None:
    logits = torch.randn(5, 10)
    assert float(jensen_shannon(logits, logits, logits)) == pytest.approx(0.0, abs=1e-6)
    assert float(jensen_shannon(logits, logits + torch.randn(5, 10), logits)) > 1e-3


def test_supervision_declared_per_instance() -> None:
    assert AugMix.uses_labels and AugMix.uses_clean_images
    assert AugMix().uses_clean_images
    distorted = AugMix(AugMixOptions(**AugMix.presets["distorted"]))
    assert distorted.uses_labels and not distorted.uses_clean_images


def test_options_are_validated() -> None:
    for bad in (dict(severity=0), dict(width=0), dict(depth=0), dict(alpha=0), dict(jsd_weight=-1)):
        with pytest.raises(ValueError):
            AugMixOptions(**bad)
