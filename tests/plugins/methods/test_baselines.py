"""Every training method follows one recipe and budget, and each learns on shapes."""

from __future__ import annotations

import copy
import importlib

import pytest
import torch

from robench.api import FitContext
from robench.backbone import BackboneSpec, create_backbone
from robench.data import DatasetSplits, Split, label_budget
from robench.evaluate import EvalConfig, evaluate_encoder
from robench.method_spec import build_method, parse_method_spec
from robench.pretrain import PretrainConfig, initial_backbone
from robench.registry import Registry
from robench_plugins.datasets.shapes import Shapes, ShapesOptions
from robench_plugins.distortions.noise import GaussianNoise
from robench_plugins.methods.ssl import DINOOptions, DINOTrainer, dino_loss, dino_views

CPU = torch.device("cpu")
REGISTRY = Registry(entry_points=False)
TRAINING = {"finetune": "finetune", "augmix": "augmix", "ssl": "ssl", "asym_kd": "asym_kd"}


def context(method, backbone, images, labels, steps: int, fraction: float = 0.5) -> FitContext:
    labelled = label_budget(labels, fraction, seed=0, dataset="t")
    return FitContext(method=method, backbone=backbone, train_images=images, labelled_indices=labelled,
                      labelled_labels=labels[labelled], num_classes=int(labels.max()) + 1, hflip=True,
                      distortion=GaussianNoise(), severities=(1, 3, 5), dataset="t", label_fraction=fraction,
                      seed=0, steps=steps, batch_size=16, device=CPU)


@pytest.mark.parametrize("name", sorted(TRAINING))
def test_training_methods_share_recipe_and_budget(tiny_spec, name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    module = importlib.import_module(f"robench_plugins.methods.{TRAINING[name]}")
    calls = {}
    real_optimizer, real_schedule = module.make_optimizer, module.cosine_schedule

    def optimizer(model, lr, weight_decay=0.05, **kw):
        calls["optimizer"] = real_optimizer(model, lr, weight_decay, **kw)
        return calls["optimizer"]

    def schedule(opt, total_steps, warmup_steps):
        calls["schedule"] = (total_steps, warmup_steps)
        return real_schedule(opt, total_steps, warmup_steps)

    monkeypatch.setattr(module, "make_optimizer", optimizer)
    monkeypatch.setattr(module, "cosine_schedule", schedule)
    images = (torch.rand(64, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    method = build_method(REGISTRY, parse_method_spec(name))
    ctx = context(method, create_backbone(tiny_spec, 4), images, torch.arange(64) % 4, steps=5)
    drawn = []
    batches = ctx.batches
    ctx.batches = lambda **kw: (drawn.append(b) or b for b in batches(**kw))
    method.fit(ctx)
    assert isinstance(calls["optimizer"], torch.optim.AdamW)
    assert calls["schedule"] == (5, round(method.options.warmup_fraction * 5))
    assert len(drawn) == 5
    assert method.options.lr == 5e-4 and method.options.weight_decay == 0.05
    if method.uses_labels:  # labels only ever come from the labelled subset
        budget = set(label_budget(torch.arange(64) % 4, 0.5, seed=0, dataset="t").tolist())
        assert all(set(b.indices.tolist()) <= budget for b in drawn)


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory):
    source = Shapes(ShapesOptions(train_size=2000, test_size=400))
    data = DatasetSplits("shapes", 10, True, Split(*source.load("train", None)), Split(*source.load("test", None)))
    spec = BackboneSpec(embed_dim=64, depth=2, num_heads=2)
    backbone, _ = initial_backbone(spec, data, None, PretrainConfig(epochs=20), tmp_path_factory.mktemp("c"), CPU)
    return data, backbone


def probe_accuracy(data: DatasetSplits, encoder: torch.nn.Module) -> float:
    labelled = label_budget(data.train.labels, 0.1, seed=0, dataset="shapes")
    result = evaluate_encoder(encoder, data, labelled, GaussianNoise(), (3,), 0, EvalConfig(), CPU)
    return result.accuracy["linear"]["3"]


@pytest.mark.parametrize("name", ["finetune", "augmix", "asym_kd"])
def test_baseline_lowers_its_objective_and_beats_chance(shapes, name: str) -> None:
    data, backbone = shapes
    method = build_method(REGISTRY, parse_method_spec(name))
    ctx = context(method, copy.deepcopy(backbone), data.train.images, data.train.labels, steps=60, fraction=0.1)
    ctx.batch_size = 64
    encoder = method.fit(ctx)
    def objective(record: dict) -> float:  # the total loss, or the sum of the (unit-weight) terms
        return record["loss"] if "loss" in record else sum(v for k, v in record.items() if k.startswith("loss_"))

    first, last = objective(ctx.history[0]), objective(ctx.history[-1])
    accuracy = probe_accuracy(data, encoder)
    print(f"{name}: objective {first:.3f} -> {last:.3f}, linear probe at noise severity 3: {accuracy:.3f}")
    assert last < first
    assert accuracy > 0.15  # ten balanced classes: chance is 0.1


def test_ssl_student_gets_closer_to_its_teacher_and_beats_chance(shapes) -> None:
    """DINO's loss can rise early while the centre flattens the targets; the objective the
    student optimises is matching the teacher, so compare the first and the trained student
    against the same (final) teacher targets on one fixed batch of views."""
    data, backbone = shapes
    options = DINOOptions(out_dim=1024, hidden_dim=256, bottleneck_dim=64)
    ctx = context(build_method(REGISTRY, parse_method_spec("ssl")), copy.deepcopy(backbone), data.train.images,
                  data.train.labels, steps=60)
    trainer = DINOTrainer(ctx.backbone, options, 60, CPU)
    first_student = copy.deepcopy(trainer.student)
    gen = torch.Generator().manual_seed(0)
    fixed = dino_views((data.test.images[:64].float() / 255), torch.Generator().manual_seed(1), options)
    for batch in ctx.batches(batch_size=64):
        trainer.step(dino_views(batch.images, gen, options))

    def objective(student) -> float:
        with torch.no_grad():
            s = trainer._forward(student, torch.cat(fixed))
            t = trainer._forward(trainer.teacher, torch.cat(fixed[:2]))
            return float(dino_loss(s, t, trainer.center, 2, 2, options.student_temp, options.teacher_temp))

    before, after = objective(first_student), objective(trainer.student)
    accuracy = probe_accuracy(data, trainer.teacher["backbone"])
    print(f"ssl: objective against the final teacher {before:.3f} -> {after:.3f}, probe {accuracy:.3f}")
    assert after < before
    assert accuracy > 0.15
