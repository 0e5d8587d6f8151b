"""asym_kd: a frozen clean teacher, a distorted-only student, three loss terms and their ablations."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import robench_plugins.methods.asym_kd as asym_kd_module
from robench.api import FitContext
from robench.backbone import BackboneSpec, create_backbone
from robench.data import DatasetSplits, Split, distortion_seeds, label_budget, to_float
from robench.evaluate import EvalConfig, evaluate_encoder
from robench.pretrain import PretrainConfig, initial_backbone
from robench.rng import BatchRNG
from robench_plugins.datasets.digits import Digits
from robench_plugins.distortions.noise import GaussianNoise
from robench_plugins.methods.asym_kd import AsymKD, AsymKDOptions

CPU = torch.device("cpu")


def toy_ctx(method: AsymKD, tiny_spec: BackboneSpec, steps: int = 4) -> FitContext:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(48, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    labels = torch.arange(48) % 4
    labelled = label_budget(labels, 0.25, seed=0, dataset="toy")
    torch.manual_seed(0)
    return FitContext(
        method=method, backbone=create_backbone(tiny_spec, 4), train_images=images, labelled_indices=labelled,
        labelled_labels=labels[labelled], num_classes=4, hflip=True, distortion=GaussianNoise(),
        severities=(3, 5), dataset="toy", label_fraction=0.25, seed=0, steps=steps, batch_size=8, device=CPU,
    )


def test_declares_clean_images_and_no_labels() -> None:
    assert AsymKD.uses_clean_images and not AsymKD.uses_labels
    assert set(AsymKD.presets) == {"global", "patch", "attn"}


def test_teacher_is_frozen_and_bit_identical_after_training(tiny_spec, monkeypatch: pytest.MonkeyPatch) -> None:
    teachers = []
    original = asym_kd_module._frozen_copy

    def capture(model, *args):
        teacher = original(model, *args)
        teachers.append((teacher, copy.deepcopy(teacher.state_dict())))
        return teacher

    monkeypatch.setattr(asym_kd_module, "_frozen_copy", capture)
    ctx = toy_ctx(AsymKD(), tiny_spec, steps=6)
    student_before = copy.deepcopy(ctx.backbone.state_dict())
    student = AsymKD().fit(ctx)
    (teacher, before), = teachers
    assert not teacher.training
    assert all(not p.requires_grad and p.grad is None for p in teacher.parameters())
    for key, value in teacher.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert any(not torch.equal(v, student_before[k]) for k, v in student.state_dict().items())


def test_student_only_ever_sees_distorted_images(tiny_spec) -> None:
    ctx = toy_ctx(AsymKD(), tiny_spec)
    student = ctx.backbone
    seen = {"student": 0, "teacher": 0}
    current = {}
    batches = ctx.batches

    def recording(**kwargs):
        for batch in batches(**kwargs):
            current["batch"] = batch
            yield batch

    def check(module, args):
        batch = current["batch"]
        if module is student.patch_embed:
            assert torch.equal(args[0], batch.images) and not torch.equal(args[0], batch.clean)
            seen["student"] += 1
        else:
            assert torch.equal(args[0], batch.clean)
            seen["teacher"] += 1

    student.patch_embed.register_forward_pre_hook(check)  # deep-copied into the teacher too
    ctx.batches = recording
    AsymKD().fit(ctx)
    assert seen == {"student": 4, "teacher": 4}


@pytest.mark.parametrize("distance", ["cosine", "mse", "smooth_l1"])
@pytest.mark.parametrize("attn_rows", ["cls", "all"])
def test_each_term_is_zero_for_equal_inputs_and_positive_otherwise(tiny_spec, distance: str, attn_rows: str) -> None:
    method = AsymKD(AsymKDOptions(distance=distance, attn_rows=attn_rows, patch_blocks=(0, -1), attn_blocks=(0, 1)))
    torch.manual_seed(0)
    teacher = create_backbone(tiny_spec, 4).eval()
    student = copy.deepcopy(teacher)
    clean = torch.rand(3, 3, 32, 32)
    noisy = (clean + 0.3 * torch.randn_like(clean)).clamp(0, 1)
    same = method.losses(student, teacher, clean, clean)
    differ = method.losses(student, teacher, noisy, clean)
    assert set(same) == set(differ) == {"global", "patch", "attn"}
    for term in same:
        zero, positive = float(same[term].detach()), float(differ[term].detach())
        assert abs(zero) < 1e-6 and positive > 1e-6, (term, zero, positive)  # random-init attention
        # is nearly uniform, so its KL is small but clearly above float error


@pytest.mark.parametrize("preset", ["global", "patch", "attn"])
def test_ablation_presets_train_only_their_term(tiny_spec, preset: str) -> None:
    method = AsymKD(AsymKDOptions(**AsymKD.presets[preset]))
    ctx = toy_ctx(method, tiny_spec, steps=3)
    fused = []
    for block in ctx.backbone.blocks:
        block.attn.register_forward_pre_hook(lambda m, a: fused.append(m.fused_attn))
    method.fit(ctx)
    assert {key for record in ctx.history for key in record if key.startswith("loss_")} == {f"loss_{preset}"}
    # with CLS rows (the default) every block keeps the fused attention kernel
    assert fused and all(fused)


def test_full_attention_rows_leave_the_fused_kernel_only_in_their_block(tiny_spec) -> None:
    method = AsymKD(AsymKDOptions(terms=("attn",), attn_rows="all"))
    ctx = toy_ctx(method, tiny_spec, steps=3)
    fused = []
    for block in ctx.backbone.blocks:
        block.attn.register_forward_pre_hook(lambda m, a: fused.append(m.fused_attn))
    method.fit(ctx)
    per_forward = len(ctx.backbone.blocks)
    calls = [fused[i:i + per_forward] for i in range(0, len(fused), per_forward)]
    assert calls and all(call == [True, False] for call in calls), calls[:2]


def test_losses_are_logged_per_epoch(tiny_spec) -> None:
    ctx = toy_ctx(AsymKD(), tiny_spec, steps=13)  # 48 images, batches of 8: 6 steps per epoch
    AsymKD().fit(ctx)
    assert [(r["step"], r["epoch"]) for r in ctx.history] == [(6, 1), (12, 2), (13, 3)]
    assert all(r["loss_global"] >= 0 and r["loss_attn"] >= 0 for r in ctx.history)


def test_options_are_validated() -> None:
    for bad in (dict(terms=("global", "cls")), dict(distance="l1"), dict(attn_rows="some"), dict(terms=())):
        with pytest.raises(ValueError):
            AsymKDOptions(**bad)


@pytest.fixture(scope="module")
def digits_backbone(tmp_path_factory: pytest.TempPathFactory):
    images, labels = Digits().load("train", None)
    test_images, test_labels = Digits().load("test", None)
    data = DatasetSplits("digits", 10, False, Split(images, labels), Split(test_images, test_labels))
    spec = BackboneSpec(embed_dim=64, depth=2, num_heads=2)
    backbone, _ = initial_backbone(spec, data, None, PretrainConfig(epochs=15), tmp_path_factory.mktemp("c"), CPU)
    return data, backbone


def test_distillation_makes_the_student_robust_under_strong_noise(digits_backbone) -> None:
    """Digits, tiny ViT, Gaussian noise at the ImageNet-C table's strongest sigma (0.38)."""
    data, backbone = digits_backbone
    noise = GaussianNoise()
    noise.table_override = "imagenet-c"
    labelled = label_budget(data.train.labels, 0.1, seed=0, dataset="digits")
    method = AsymKD(AsymKDOptions(lr=1e-3, severity=5))
    ctx = FitContext(
        method=method, backbone=copy.deepcopy(backbone), train_images=data.train.images,
        labelled_indices=labelled, labelled_labels=data.train.labels[labelled], num_classes=10,
        hflip=False, distortion=noise, severities=(5,), dataset="digits", label_fraction=0.1, seed=0,
        steps=150, batch_size=64, device=CPU,
    )
    student = method.fit(ctx)

    clean = to_float(data.test.images)
    seeds = distortion_seeds(0, "digits", "test", noise.name, 5, torch.arange(len(data.test)))
    noisy = noise(clean, 5, BatchRNG(seeds))
    with torch.no_grad():
        target = backbone.forward_features(clean)[:, 0]
        before = F.cosine_similarity(backbone.forward_features(noisy)[:, 0], target).mean()
        after = F.cosine_similarity(student.forward_features(noisy)[:, 0], target).mean()
    config = EvalConfig()
    accuracy = {name: evaluate_encoder(enc, data, labelled, noise, (5,), 0, config, CPU).accuracy["linear"]["5"]
                for name, enc in (("none", backbone), ("asym_kd", student))}
    print(f"cosine(student(noisy), teacher(clean)): none {before:.3f}, asym_kd {after:.3f}")
    print(f"linear probe at sigma 0.38: none {accuracy['none']:.3f}, asym_kd {accuracy['asym_kd']:.3f}")
    assert after > before + 0.3
    assert accuracy["asym_kd"] > accuracy["none"] + 0.03


def test_presets_and_options_from_a_run(tmp_path: Path) -> None:
    import robench

    from conftest import fast_run_options

    table = robench.run(**fast_run_options(tmp_path / "run", methods="none,asym_kd,asym_kd:global,asym_kd:attn:attn_rows=all",
                                           seeds="0"))
    assert list(dict.fromkeys(table["method"])) == ["none", "asym_kd", "asym_kd:global", "asym_kd:attn:attn_rows=all"]
    kd = table[table["method"] == "asym_kd"].iloc[0]
    assert bool(kd["uses_clean_images"]) and not bool(kd["uses_labels"])
    import json
    record = json.loads((tmp_path / "run" / "cells" / "shapes" / "gaussian_noise" / "asym_kd:attn:attn_rows=all"
                         / "seed-0.json").read_text())
    assert record["method"]["details"]["options"]["terms"] == ["attn"]
    assert record["method"]["details"]["options"]["attn_rows"] == "all"
    assert dataclasses.asdict(AsymKDOptions())["lr"] == 5e-4
