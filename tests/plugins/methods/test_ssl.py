"""ssl: DINO's EMA teacher, centring, views; no labels and no clean images ever read."""

from __future__ import annotations

import copy

import torch

from robench.api import FitContext
from robench.backbone import create_backbone
from robench.data import label_budget
from robench_plugins.distortions.noise import GaussianNoise
from robench_plugins.methods.ssl import DINOOptions, DINOTrainer, SelfSupervised, dino_loss, dino_views, update_center

CPU = torch.device("cpu")
SMALL = DINOOptions(out_dim=64, hidden_dim=32, bottleneck_dim=16)


def test_teacher_is_an_ema_of_the_student_after_a_step(tiny_spec) -> None:
    torch.manual_seed(0)
    trainer = DINOTrainer(create_backbone(tiny_spec, 4), SMALL, total_steps=10, device=CPU)
    teacher_before = copy.deepcopy(trainer.teacher.state_dict())
    momentum = trainer.momentum()
    views = dino_views(torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(0), SMALL)
    trainer.step(views)
    student = dict(trainer.student.named_parameters())
    for name, param in trainer.teacher.named_parameters():
        expected = momentum * teacher_before[name] + (1 - momentum) * student[name].detach()
        torch.testing.assert_close(param, expected)
    assert not any(p.requires_grad for p in trainer.teacher.parameters())
    assert momentum == SMALL.teacher_momentum and trainer.momentum() > momentum  # cosine towards 1


def test_centre_is_an_ema_of_the_teacher_output() -> None:
    center = torch.zeros(1, 8)
    out = torch.randn(16, 8)
    torch.testing.assert_close(update_center(center, out, 0.9), 0.1 * out.mean(0, keepdim=True))


def test_centre_moves_during_training(tiny_spec) -> None:
    torch.manual_seed(0)
    trainer = DINOTrainer(create_backbone(tiny_spec, 4), SMALL, total_steps=10, device=CPU)
    trainer.step(dino_views(torch.rand(4, 3, 32, 32), torch.Generator().manual_seed(1), SMALL))
    assert trainer.center.abs().sum() > 0


def test_loss_pairs_every_global_teacher_view_with_the_other_views() -> None:
    student = torch.randn(4 * 3, 16)  # 3 views of 4 images
    teacher = torch.randn(4 * 2, 16)
    loss = dino_loss(student, teacher, torch.zeros(1, 16), n_views=3, n_global=2, student_temp=0.1, teacher_temp=0.04)
    s, t = student.chunk(3), torch.softmax(teacher / 0.04, -1).chunk(2)
    pairs = [(0, 1), (0, 2), (1, 0), (1, 2)]
    expected = sum(torch.sum(-t[i] * torch.log_softmax(s[j] / 0.1, -1), -1).mean() for i, j in pairs) / 4
    torch.testing.assert_close(loss, expected)


def test_views_keep_shape_and_range_and_differ() -> None:
    x = torch.rand(5, 3, 32, 32)
    views = dino_views(x, torch.Generator().manual_seed(0), DINOOptions(local_views=2))
    assert len(views) == 4 and all(v.shape == x.shape and v.min() >= 0 and v.max() <= 1 for v in views)
    assert not torch.equal(views[0], views[1])


def test_ssl_never_reads_labels_or_clean_images(tiny_spec) -> None:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(32, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    labels = torch.arange(32) % 4
    labelled = label_budget(labels, 0.5, seed=0, dataset="toy")
    method = SelfSupervised(SMALL)
    ctx = FitContext(method=method, backbone=create_backbone(tiny_spec, 4), train_images=images,
                     labelled_indices=labelled, labelled_labels=labels[labelled], num_classes=4, hflip=True,
                     distortion=GaussianNoise(), severities=(5,), dataset="toy", label_fraction=0.5, seed=0,
                     steps=3, batch_size=8, device=CPU)
    requests = []
    batches = ctx.batches

    def recording(**kwargs):
        requests.append(kwargs)
        for batch in batches(**kwargs):
            assert batch.labels is None and batch.clean is None
            yield batch

    ctx.batches = recording
    assert not SelfSupervised.uses_labels and not SelfSupervised.uses_clean_images
    encoder = method.fit(ctx)
    assert requests == [{}]  # neither labelled=True nor clean=True was asked for
    assert hasattr(encoder, "forward_features") and not encoder.training
