"""The fit context enforces declared supervision and hands out the budgeted data."""

from __future__ import annotations

import pytest
import torch

from robench.api import Distortion, FitContext, Method
from robench.backbone import create_backbone
from robench.data import label_budget
from robench.errors import SupervisionError
from robench_plugins.distortions.noise import GaussianNoise

N_TRAIN = 60
LABELS = torch.arange(N_TRAIN) % 4


class Identity(Distortion):
    """No change (lets a test see the clean/distorted pairing)."""

    name = "identity"

    def apply(self, images, severity, rng):
        return images.clone()


def method(labels: bool, clean: bool) -> Method:
    class Probe(Method):
        """Records nothing; only its declarations matter."""

        name = "probe"
        uses_labels = labels
        uses_clean_images = clean

        def fit(self, ctx):
            return ctx.backbone

    return Probe()


def make_ctx(tiny_spec, labels: bool = False, clean: bool = False, distortion: Distortion | None = None,
             steps: int = 4, seed: int = 0) -> FitContext:
    images = (torch.rand(N_TRAIN, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    labelled = label_budget(LABELS, 0.2, seed=seed, dataset="toy")
    return FitContext(
        method=method(labels, clean), backbone=create_backbone(tiny_spec, 4), train_images=images,
        labelled_indices=labelled, labelled_labels=LABELS[labelled], num_classes=4, hflip=True,
        distortion=distortion or GaussianNoise(), severities=(1, 5), dataset="toy",
        label_fraction=0.2, seed=seed, steps=steps, batch_size=8, device=torch.device("cpu"),
    )


def test_undeclared_clean_images_are_refused(tiny_spec) -> None:
    ctx = make_ctx(tiny_spec, labels=True)
    with pytest.raises(SupervisionError, match="asked for clean images but does not declare uses_clean_images"):
        ctx.batches(clean=True)
    assert all(batch.clean is None for batch in ctx.batches())


def test_undeclared_labels_are_refused_and_absent(tiny_spec) -> None:
    ctx = make_ctx(tiny_spec, clean=True)
    with pytest.raises(SupervisionError, match="asked for labels but does not declare uses_labels"):
        ctx.batches(labelled=True)
    assert all(batch.labels is None for batch in ctx.batches(clean=True))
    held = [v for v in vars(ctx).values() if isinstance(v, torch.Tensor) and v.dtype == torch.int64]
    assert all(not torch.equal(v, LABELS[: v.numel()]) for v in held if v.numel() > 1)


def test_labels_beyond_the_budget_are_not_in_the_context(tiny_spec) -> None:
    ctx = make_ctx(tiny_spec, labels=True)
    budget = label_budget(LABELS, 0.2, seed=0, dataset="toy")
    assert ctx.num_labelled == budget.numel() == 12
    label_tensors = [v for v in vars(ctx).values() if isinstance(v, torch.Tensor) and v.dtype == torch.int64]
    assert max(v.numel() for v in label_tensors) == budget.numel()
    seen = set()
    for batch in ctx.batches(labelled=True, steps=10):
        assert set(batch.indices.tolist()) <= set(budget.tolist())
        assert torch.equal(batch.labels, LABELS[batch.indices])
        seen |= set(batch.indices.tolist())
    assert seen == set(budget.tolist())


def test_clean_and_distorted_share_geometry(tiny_spec) -> None:
    ctx = make_ctx(tiny_spec, clean=True, distortion=Identity())
    for batch in ctx.batches(clean=True):
        assert torch.equal(batch.images, batch.clean)
    ctx = make_ctx(tiny_spec, clean=True)
    batch = next(iter(ctx.batches(clean=True)))
    assert not torch.equal(batch.images, batch.clean)
    assert set(batch.severities.tolist()) <= {1, 5}


def test_budget_and_determinism(tiny_spec) -> None:
    first = list(make_ctx(tiny_spec).batches())
    second = list(make_ctx(tiny_spec).batches())
    assert len(first) == 4 and all(b.images.shape == (8, 3, 32, 32) for b in first)
    for a, b in zip(first, second):
        assert torch.equal(a.images, b.images) and torch.equal(a.indices, b.indices)
    other_seed = list(make_ctx(tiny_spec, seed=1).batches())
    assert not torch.equal(first[0].images, other_seed[0].images)
    fixed = next(iter(make_ctx(tiny_spec).batches(severity=5)))
    assert fixed.severities.tolist() == [5] * 8


def test_fixed_severity_is_checked(tiny_spec) -> None:
    from robench.errors import ConfigError

    with pytest.raises(ConfigError, match="severity 9"):
        make_ctx(tiny_spec).batches(severity=9)


def test_fixed_augmentation_variants(tiny_spec) -> None:
    ctx = make_ctx(tiny_spec, clean=True, steps=40)
    views: dict[tuple[int, int], torch.Tensor] = {}
    repeats = 0
    for batch in ctx.batches(clean=True, variants=2):
        assert batch.variants.shape == batch.indices.shape and set(batch.variants.tolist()) <= {0, 1}
        for index, variant, clean in zip(batch.indices.tolist(), batch.variants.tolist(), batch.clean):
            if (index, variant) in views:
                repeats += 1
                assert torch.equal(views[index, variant], clean)  # a variant is one fixed augmentation
            views[index, variant] = clean
    assert repeats > 0
    distinct = [i for i in range(N_TRAIN) if (i, 0) in views and (i, 1) in views]
    assert any(not torch.equal(views[i, 0], views[i, 1]) for i in distinct)
    assert all(batch.variants is None for batch in ctx.batches(clean=True))
    with pytest.raises(ValueError, match="variants must be at least 1"):
        ctx.batches(variants=0)


def test_clean_stream_does_not_depend_on_the_distortion(tiny_spec) -> None:
    noisy = make_ctx(tiny_spec, clean=True, distortion=GaussianNoise())
    plain = make_ctx(tiny_spec, clean=True, distortion=Identity())
    for a, b in zip(noisy.batches(clean=True), plain.batches(clean=True)):
        assert torch.equal(a.indices, b.indices) and torch.equal(a.clean, b.clean)
        assert not torch.equal(a.images, b.images)
