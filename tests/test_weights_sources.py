"""Starting weights: timm hub tags (only when asked), DINO pretraining, files of another architecture."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robench.backbone import BackboneSpec, create_backbone, save_weights
from robench.config import make_config
from robench.data import DatasetSplits, Split
from robench.errors import ConfigError
from robench.pretrain import PretrainConfig, initial_backbone

CPU = torch.device("cpu")


def toy() -> DatasetSplits:
    gen = torch.Generator().manual_seed(0)
    images = (torch.rand(48, 3, 32, 32, generator=gen) * 255).to(torch.uint8)
    labels = torch.arange(48) % 3
    return DatasetSplits("toy", 3, True, Split(images, labels), Split(images[:12], labels[:12]))


def test_timm_tag_asks_timm_for_pretrained_weights(monkeypatch: pytest.MonkeyPatch, tiny_spec) -> None:
    import timm

    calls = []
    real = timm.create_model
    tiny = real(tiny_spec.model, num_classes=3, **tiny_spec.overrides())

    def fake_create_model(name, pretrained=False, **kwargs):
        calls.append((name, pretrained, kwargs))
        return tiny

    monkeypatch.setattr(timm, "create_model", fake_create_model)
    spec = BackboneSpec("vit_small_patch16_224", 32, None, None, None, None)
    model, weights_id = initial_backbone(spec, toy(), "timm:vit_small_patch16_224.augreg_in21k",
                                         PretrainConfig(), Path("unused"), CPU)
    assert calls == [("vit_small_patch16_224.augreg_in21k", True, {"num_classes": 3, "img_size": 32})]
    assert weights_id == "timm:vit_small_patch16_224.augreg_in21k" and not model.training


def test_timm_tag_without_network_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import timm

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nmore detail")

    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match="cannot load timm weights 'vit_tiny_patch16_224.augreg_in21k' "
                                          r"\(from --weights\): We couldn't connect.*need network access"):
        initial_backbone(BackboneSpec(), toy(), "timm:vit_tiny_patch16_224.augreg_in21k", PretrainConfig(),
                         Path("unused"), CPU)


def test_timm_weights_choose_the_backbone(tmp_path: Path) -> None:
    config = make_config(weights="timm:vit_small_patch16_224.augreg_in21k", out=tmp_path / "r")
    assert config.backbone == BackboneSpec("vit_small_patch16_224", None, None, None, None, None)
    assert make_config(weights="timm:vit_small_patch16_224", img_size=32, out=tmp_path / "r").backbone.img_size == 32
    with pytest.raises(ConfigError, match="--backbone vit_base_patch16_224 does not match --weights timm:vit_small"):
        make_config(weights="timm:vit_small_patch16_224", backbone="vit_base_patch16_224", out=tmp_path / "r")


def test_dino_pretraining_uses_no_labels_and_is_cached_apart(tiny_spec, tmp_path: Path) -> None:
    data = toy()
    start = create_backbone(tiny_spec, 3, seed=0)
    dino, dino_id = initial_backbone(tiny_spec, data, None, PretrainConfig(mode="dino", epochs=2, batch_size=16),
                                     tmp_path, CPU)
    supervised, supervised_id = initial_backbone(tiny_spec, data, None, PretrainConfig(epochs=2, batch_size=16),
                                                 tmp_path, CPU)
    assert dino_id.startswith("robench-dino:") and supervised_id.startswith("robench-supervised:")
    assert len(list((tmp_path / "pretrain").glob("*.safetensors"))) == 2
    assert not torch.equal(dino.blocks[0].attn.qkv.weight, start.blocks[0].attn.qkv.weight)
    # no label ever reached the head: it is its initial value (up to the EMA's float rounding)
    torch.testing.assert_close(dino.head.weight, start.head.weight, rtol=0, atol=1e-6)


def test_weights_of_another_architecture_from_the_command_line(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from robench.cli import main

    from conftest import fast_run_argv

    other = create_backbone(BackboneSpec(embed_dim=96, depth=2, num_heads=3), 10)
    save_weights(other, tmp_path / "wide.safetensors")
    assert main(fast_run_argv(tmp_path / "run", weights=str(tmp_path / "wide.safetensors"))) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "does not fit the backbone" in err and "shape mismatches, e.g." in err
