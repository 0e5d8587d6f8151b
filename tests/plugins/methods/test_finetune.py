"""finetune: learns its objective from distorted labelled images, only within the label budget."""

from __future__ import annotations

import torch

from robench.api import FitContext
from robench.backbone import create_backbone
from robench.data import label_budget
from robench_plugins.distortions.noise import GaussianNoise
from robench_plugins.methods.finetune import Finetune, FinetuneOptions
from robench_plugins.methods.none import NoAdaptation


def two_class_ctx(method, tiny_spec, steps: int) -> tuple[FitContext, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(96) % 2
    base = torch.where(labels.bool()[:, None, None, None], 190.0, 60.0).expand(-1, 3, 32, 32)
    images = (base + 20 * torch.randn(96, 3, 32, 32, generator=gen)).clamp(0, 255).to(torch.uint8)
    labelled = label_budget(labels, 0.5, seed=0, dataset="toy")
    ctx = FitContext(
        method=method, backbone=create_backbone(tiny_spec, 2), train_images=images,
        labelled_indices=labelled, labelled_labels=labels[labelled], num_classes=2, hflip=True,
        distortion=GaussianNoise(), severities=(5,), dataset="toy", label_fraction=0.5, seed=0,
        steps=steps, batch_size=16, device=torch.device("cpu"),
    )
    return ctx, labelled


def test_finetune_lowers_its_loss_using_only_budgeted_labels(tiny_spec) -> None:
    torch.manual_seed(0)
    method = Finetune(FinetuneOptions(lr=1e-3, log_every=5))
    ctx, labelled = two_class_ctx(method, tiny_spec, steps=30)
    seen: set[int] = set()
    original = ctx.batches

    def recording_batches(**kwargs):
        for batch in original(**kwargs):
            seen.update(batch.indices.tolist())
            yield batch

    ctx.batches = recording_batches
    model = method.fit(ctx)
    losses = [record["loss"] for record in ctx.history]
    assert [record["step"] for record in ctx.history] == [5, 10, 15, 20, 25, 30]
    assert losses[-1] < losses[0] * 0.7
    assert seen <= set(labelled.tolist())
    assert not model.training


def test_none_returns_the_backbone_untouched(tiny_spec) -> None:
    ctx, _ = two_class_ctx(NoAdaptation(), tiny_spec, steps=5)
    before = {k: v.clone() for k, v in ctx.backbone.state_dict().items()}
    model = NoAdaptation().fit(ctx)
    assert model is ctx.backbone
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_compile_falls_back_to_eager_with_a_warning(tiny_spec, monkeypatch, caplog) -> None:
    def broken_compile(model, *args, **kwargs):
        def run(*a, **k):
            raise RuntimeError("no compiler for this backend")
        return run

    results = []
    for compile in (False, True):
        torch.manual_seed(0)
        method = Finetune(FinetuneOptions(log_every=2))
        ctx, _ = two_class_ctx(method, tiny_spec, steps=4)
        ctx.compile = compile
        if compile:
            monkeypatch.setattr(torch, "compile", broken_compile)
        model = method.fit(ctx)
        results.append((ctx.history, model.state_dict()))
    assert "torch.compile failed (RuntimeError: no compiler for this backend); running eagerly" in caplog.text
    assert results[0][0] == results[1][0]
    for key, value in results[0][1].items():
        assert torch.equal(value, results[1][1][key]), key
