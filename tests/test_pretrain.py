"""Clean pretraining: trains once, caches under a hash of its config, or loads given weights."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

import robench.pretrain as pretrain
from robench.backbone import create_backbone, save_weights
from robench.data import DatasetSplits, Split
from robench.pretrain import PretrainConfig, initial_backbone, pretrain_key

CPU = torch.device("cpu")


def toy_data(seed: int = 0) -> DatasetSplits:
    gen = torch.Generator().manual_seed(seed)
    labels = torch.arange(64) % 2
    images = torch.where(labels[:, None, None, None].bool(), 200, 40).to(torch.uint8).expand(-1, 3, 32, 32)
    images = (images + torch.randint(0, 30, (64, 3, 32, 32), generator=gen)).to(torch.uint8)
    return DatasetSplits("toy", 2, True, Split(images, labels), Split(images[:16], labels[:16]))


def test_pretraining_is_cached_and_reused(tiny_spec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = PretrainConfig(epochs=2, batch_size=16)
    model, weights_id = initial_backbone(tiny_spec, toy_data(), None, config, tmp_path, CPU)
    files = sorted(p.name for p in (tmp_path / "pretrain").iterdir())
    key = pretrain_key(tiny_spec, toy_data(), config)
    assert files == [f"toy-{key}.json", f"toy-{key}.safetensors"] and weights_id == f"robench-supervised:{key}"

    def no_training(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(pretrain, "_train", no_training)
    again, again_id = initial_backbone(tiny_spec, toy_data(), None, config, tmp_path, CPU)
    assert again_id == weights_id
    for k, v in model.state_dict().items():
        assert torch.equal(v, again.state_dict()[k])


def test_pretraining_learns_the_clean_task(tiny_spec, tmp_path: Path) -> None:
    model, _ = initial_backbone(tiny_spec, toy_data(), None, PretrainConfig(epochs=6, batch_size=16),
                                tmp_path, CPU)
    data = toy_data(1)
    with torch.no_grad():
        predictions = model(data.test.images.float() / 255).argmax(1)
    assert (predictions == data.test.labels).float().mean() >= 0.9


def test_key_changes_with_everything_that_matters(tiny_spec) -> None:
    base = pretrain_key(tiny_spec, toy_data(), PretrainConfig())
    assert base == pretrain_key(tiny_spec, toy_data(), PretrainConfig())
    assert base != pretrain_key(tiny_spec, toy_data(seed=1), PretrainConfig())
    assert base != pretrain_key(tiny_spec, toy_data(), PretrainConfig(epochs=31))
    assert base != pretrain_key(dataclasses.replace(tiny_spec, depth=3), toy_data(), PretrainConfig())


def test_given_weights_are_loaded_instead(tiny_spec, tmp_path: Path) -> None:
    source = create_backbone(tiny_spec, 2)
    path = tmp_path / "mine.safetensors"
    save_weights(source, path)
    model, weights_id = initial_backbone(tiny_spec, toy_data(), path, PretrainConfig(), tmp_path / "cache", CPU)
    assert weights_id.startswith("file:mine.safetensors@") and not (tmp_path / "cache").exists()
    assert torch.equal(model.pos_embed, source.pos_embed)
