"""asym_kd's teacher-side savings give the losses of the plain path: the teacher cache, and one
teacher pass shared by the students of several distortions (``fit_group``), in and out of a run."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

import robench
import robench_plugins.methods.asym_kd as asym_kd_module
from robench.api import Distortion, FitContext
from robench.backbone import BackboneSpec, create_backbone
from robench.data import label_budget
from robench_plugins.distortions.blur import DefocusBlur
from robench_plugins.distortions.noise import GaussianNoise
from robench_plugins.methods.asym_kd import AsymKD, AsymKDOptions

from conftest import fast_run_options

CPU = torch.device("cpu")
N_TRAIN, BATCH = 24, 8  # 3 steps per epoch


def ctx_for(method: AsymKD, spec: BackboneSpec, distortion: Distortion | None = None, steps: int = 9,
            device: torch.device = CPU) -> FitContext:
    images = (torch.rand(N_TRAIN, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    labels = torch.arange(N_TRAIN) % 4
    labelled = label_budget(labels, 0.25, seed=0, dataset="toy")
    torch.manual_seed(0)
    return FitContext(
        method=method, backbone=create_backbone(spec, 4).to(device), train_images=images, labelled_indices=labelled,
        labelled_labels=labels[labelled], num_classes=4, hflip=True, distortion=distortion or GaussianNoise(),
        severities=(3, 5), dataset="toy", label_fraction=0.25, seed=0, steps=steps, batch_size=BATCH, device=device,
    )


def losses(ctx: FitContext) -> list[dict[str, float]]:
    return [{k: v for k, v in record.items() if k.startswith("loss_")} for record in ctx.history]


def assert_same_students(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)


def count_teacher_images(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    counts: list[int] = []
    original = asym_kd_module._teacher_features

    def counting(teacher, clean, blocks):
        counts.append(clean.shape[0])
        return original(teacher, clean, blocks)

    monkeypatch.setattr(asym_kd_module, "_teacher_features", counting)
    return counts


def test_teacher_cache_gives_the_losses_of_the_uncached_path(tiny_spec, monkeypatch) -> None:
    plain_method = AsymKD(AsymKDOptions(variants=2))
    plain = ctx_for(plain_method, tiny_spec)
    plain_student = plain_method.fit(plain)
    counts = count_teacher_images(monkeypatch)
    cached_method = AsymKD(AsymKDOptions(variants=2, teacher_cache=True))
    cached = ctx_for(cached_method, tiny_spec)
    cached_student = cached_method.fit(cached)
    assert len(losses(cached)) == 3 and set(losses(cached)[0]) == {"loss_global", "loss_patch", "loss_attn"}
    for a, b in zip(losses(plain), losses(cached)):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-8), (a, b)  # teacher batches differ in size
    assert_same_students(plain_student, cached_student)
    # 9 steps x 8 images = 72 teacher images uncached; cached, each (image, variant) at most once
    assert sum(counts) <= N_TRAIN * 2 and sum(counts) < 9 * BATCH
    print(f"teacher images: cached {sum(counts)}, uncached {9 * BATCH}")


def test_teacher_cache_over_its_memory_limit_runs_without_it(tiny_spec, monkeypatch, caplog) -> None:
    counts = count_teacher_images(monkeypatch)
    method = AsymKD(AsymKDOptions(variants=2, teacher_cache=True, teacher_cache_gb=1e-6))
    ctx = ctx_for(method, tiny_spec, steps=6)
    method.fit(ctx)
    assert "teacher cache would take" in caplog.text
    assert sum(counts) >= 6 * BATCH  # every batch through the teacher


def test_fit_group_equals_separate_fits(tiny_spec, monkeypatch) -> None:
    distortions = [GaussianNoise(), DefocusBlur()]
    method = AsymKD()
    alone = [ctx_for(method, tiny_spec, d) for d in distortions]
    students_alone = [method.fit(ctx) for ctx in alone]
    counts = count_teacher_images(monkeypatch)
    together = [ctx_for(method, tiny_spec, d) for d in distortions]
    students_together = method.fit_group(together)
    assert sum(counts) == 9 * BATCH  # one teacher pass per step for both students
    for ctx_a, ctx_b, a, b in zip(alone, together, students_alone, students_together):
        for x, y in zip(losses(ctx_a), losses(ctx_b)):
            assert x == pytest.approx(y, rel=1e-5)
        assert_same_students(a, b)
    # the students really differ: each learned under its own distortion
    assert losses(together[0]) != losses(together[1])


def test_a_run_with_a_shared_teacher_writes_the_leaderboard_of_separate_cells(tmp_path) -> None:
    options = dict(methods="asym_kd", distortions="gaussian_noise,defocus_blur", seeds="0")
    shared = robench.run(**fast_run_options(tmp_path / "shared", **options))
    apart = robench.run(**fast_run_options(tmp_path / "apart", share_teacher=False, **options))
    pd.testing.assert_frame_equal(shared, apart, check_exact=False, rtol=1e-6)
    for run, together in (("shared", 2), ("apart", 1)):
        path = tmp_path / run / "cells" / "shapes" / "defocus_blur" / "asym_kd" / "seed-0.json"
        assert json.loads(path.read_text())["timing"]["trained_together"] == together


GROUP_FAILS_PLUGIN = '''
from robench.api import hookimpl
from robench_plugins.methods.asym_kd import AsymKD

class Fragile(AsymKD):
    """asym_kd whose grouped training always fails, and whose defocus_blur cell fails alone."""
    name = "fragile_kd"
    def fit_group(self, contexts):
        if len(contexts) > 1:
            raise RuntimeError("grouped training broke")
        return super().fit_group(contexts)
    def fit(self, ctx):
        if ctx.distortion.name == "defocus_blur":
            raise RuntimeError("defocus_blur diverged")
        return super().fit(ctx)

@hookimpl
def robench_methods():
    return [Fragile]
'''


def test_a_group_that_fails_is_retried_cell_by_cell(tmp_path, caplog) -> None:
    from robench.config import make_config
    from robench.runner import execute

    plugin = tmp_path / "fragile_kd.py"
    plugin.write_text(GROUP_FAILS_PLUGIN)
    config = make_config(**fast_run_options(tmp_path / "run", methods="fragile_kd", seeds="0", plugins=str(plugin),
                                            distortions="gaussian_noise,defocus_blur"))
    outcome = execute(config)
    assert "computed together failed (RuntimeError); computing them one by one" in caplog.text
    assert [key.distortion for key in outcome.failed] == ["defocus_blur"]
    assert "defocus_blur diverged" in next(iter(outcome.failed.values()))
    record = tmp_path / "run" / "cells" / "shapes" / "gaussian_noise" / "fragile_kd" / "seed-0.json"
    assert json.loads(record.read_text())["timing"]["trained_together"] == 1


def test_a_bf16_teacher_gives_targets_close_to_the_float32_ones(tiny_spec) -> None:
    """``teacher_bf16``'s teacher (on a GPU: here on the CPU, where bf16 runs too) is a bf16 copy
    whose targets are those of the float32 teacher to bf16 precision, attention rows in float32."""
    backbone = create_backbone(tiny_spec, 4)
    clean = torch.rand(6, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    blocks = AsymKD()._blocks(len(backbone.blocks))
    exact = asym_kd_module._teacher_features(asym_kd_module._frozen_copy(backbone), clean, blocks)
    teacher = asym_kd_module._frozen_copy(backbone, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in teacher.parameters())
    assert all(p.dtype == torch.float32 for p in backbone.parameters())  # the student's copy is untouched
    low = asym_kd_module._teacher_features(teacher, clean, blocks)
    assert low.cls.dtype == low.patches.dtype == torch.bfloat16
    for a, b in ((low.cls, exact.cls), (low.patches, exact.patches)):
        assert torch.nn.functional.cosine_similarity(a.float(), b, dim=-1).min() > 0.99
    (key, rows), = low.attentions.items()
    assert rows.dtype == torch.float32 and (rows - exact.attentions[key]).abs().max() < 0.01
    torch.testing.assert_close(rows.sum(-1), torch.ones_like(rows.sum(-1)))


def test_the_teacher_is_bf16_only_on_a_gpu_and_when_asked(tiny_spec, monkeypatch) -> None:
    dtypes = []
    original = asym_kd_module._frozen_copy

    def capture(model, dtype=None):
        dtypes.append(dtype)
        return original(model, dtype)

    monkeypatch.setattr(asym_kd_module, "_frozen_copy", capture)
    for options in (AsymKDOptions(), AsymKDOptions(teacher_bf16=False)):
        method = AsymKD(options)
        method.fit(ctx_for(method, tiny_spec, steps=2))
    assert dtypes == [None, None]  # the CPU: float32 either way
    if torch.cuda.is_available():
        dtypes.clear()
        for options in (AsymKDOptions(), AsymKDOptions(teacher_bf16=False)):
            method = AsymKD(options)
            method.fit(ctx_for(method, tiny_spec, steps=2, device=torch.device("cuda")))
        assert dtypes == [torch.bfloat16, None]
