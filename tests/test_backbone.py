"""The ViT backbone: creation, feature extraction with attention taps, weight files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from robench.backbone import (
    BackboneSpec,
    cls_embedding,
    create_backbone,
    extract_features,
    load_weights,
    save_weights,
)
from robench.errors import ConfigError


@pytest.fixture
def model(tiny_spec: BackboneSpec) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_backbone(tiny_spec, num_classes=10).eval()


def test_tiny_vit_shapes(model: torch.nn.Module, tiny_spec: BackboneSpec) -> None:
    x = torch.rand(3, 3, 32, 32)
    features = extract_features(model, x, attn_blocks=[-1], token_blocks=[0])
    assert features.cls.shape == (3, 64)
    assert features.patches.shape == (3, 64, 64)  # (32 / 4)^2 patches of width 64
    assert features.attentions[1].shape == (3, 2, 65, 65)  # heads, tokens incl. CLS
    assert features.tokens[0].shape == (3, 65, 64)
    assert model(x).shape == (3, 10)
    assert tiny_spec.label == "vit_tiny_patch16_224@img32-p4-w64-d2-h2"


def test_features_equal_the_plain_forward(model: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        plain = model.forward_features(x)
        tapped = extract_features(model, x, attn_blocks=[0, 1])
    torch.testing.assert_close(tapped.cls, plain[:, 0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(tapped.patches, plain[:, 1:], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cls_embedding(model, x), plain[:, 0])


def test_attention_is_the_softmax_of_scaled_query_key(model: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 32, 32)
    inputs = {}
    block = model.blocks[1]
    hook = block.attn.register_forward_pre_hook(lambda m, args: inputs.setdefault("x", args[0]))
    probs = extract_features(model, x, attn_blocks=[1]).attentions[1]
    hook.remove()
    attn = block.attn
    b, n, c = inputs["x"].shape
    qkv = attn.qkv(inputs["x"]).reshape(b, n, 3, attn.num_heads, c // attn.num_heads).permute(2, 0, 3, 1, 4)
    q, k = qkv[0], qkv[1]
    expected = ((q @ k.transpose(-2, -1)) * attn.scale).softmax(-1)
    torch.testing.assert_close(probs, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(probs.sum(-1), torch.ones(2, 2, 65))


def test_cls_attention_rows_equal_the_explicit_maps_and_keep_the_fused_kernel(model: torch.nn.Module) -> None:
    x = torch.rand(2, 3, 32, 32)
    full = extract_features(model, x, attn_blocks=[0, 1]).attentions
    fused = []
    hooks = [blk.attn.register_forward_pre_hook(lambda m, a: fused.append(m.fused_attn)) for blk in model.blocks]
    rows = extract_features(model, x, attn_blocks=[0, 1], attn_rows="cls")
    for hook in hooks:
        hook.remove()
    assert fused == [blk.attn.fused_attn for blk in model.blocks] and all(fused)
    for i in (0, 1):
        assert rows.attentions[i].shape == (2, 2, 1, 65)
        torch.testing.assert_close(rows.attentions[i], full[i][:, :, :1], rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        torch.testing.assert_close(rows.cls, model.forward_features(x)[:, 0], rtol=1e-5, atol=1e-5)
    rows.attentions[1].pow(2).sum().backward()
    assert model.blocks[1].attn.qkv.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="attn_rows 'some': choose from all, cls"):
        extract_features(model, x, attn_blocks=[0], attn_rows="some")


def test_only_chosen_blocks_leave_the_fused_kernel(model: torch.nn.Module) -> None:
    seen = {}
    hooks = [
        blk.attn.register_forward_pre_hook(lambda m, a, i=i: seen.__setitem__(i, m.fused_attn))
        for i, blk in enumerate(model.blocks)
    ]
    fused_before = [blk.attn.fused_attn for blk in model.blocks]
    extract_features(model, torch.rand(1, 3, 32, 32), attn_blocks=[1])
    for hook in hooks:
        hook.remove()
    assert seen == {0: fused_before[0], 1: False}
    assert [blk.attn.fused_attn for blk in model.blocks] == fused_before  # restored


def test_gradients_flow_through_attention(model: torch.nn.Module) -> None:
    features = extract_features(model, torch.rand(2, 3, 32, 32), attn_blocks=[0])
    features.attentions[0].pow(2).sum().backward()
    assert model.blocks[0].attn.qkv.weight.grad is not None
    assert model.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_bad_block_index(model: torch.nn.Module) -> None:
    with pytest.raises(ConfigError, match="block 5 does not exist; the backbone has blocks 0-1"):
        extract_features(model, torch.rand(1, 3, 32, 32), attn_blocks=[5])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (dict(model="vit_tiny_patch16"), "unknown backbone 'vit_tiny_patch16'.*Did you mean"),
        (dict(img_size=30), "image size 30 is not a multiple of patch size 4"),
        (dict(embed_dim=65), "width 65 is not divisible by the number of heads 2"),
        (dict(depth=0), "depth must be a positive integer"),
    ],
)
def test_bad_specs(tiny_spec: BackboneSpec, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dataclasses.replace(tiny_spec, **change).validate()


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_weights_roundtrip(model: torch.nn.Module, tiny_spec: BackboneSpec, tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_weights(model, path)
    else:
        torch.save({"model": {f"module.{k}": v for k, v in model.state_dict().items()}}, path)
    other = create_backbone(tiny_spec, num_classes=10)
    load_weights(other, path)
    for key, value in model.state_dict().items():
        assert torch.equal(value, other.state_dict()[key]), key


def test_head_of_another_class_count_is_reinitialised(model: torch.nn.Module, tiny_spec: BackboneSpec,
                                                      tmp_path: Path) -> None:
    path = tmp_path / "w.safetensors"
    save_weights(model, path)
    other = create_backbone(tiny_spec, num_classes=4)
    load_weights(other, path)
    assert torch.equal(other.pos_embed, model.pos_embed)
    assert other.head.weight.shape == (4, 64)


def test_weights_errors(model: torch.nn.Module, tiny_spec: BackboneSpec, tmp_path: Path) -> None:
    wider = create_backbone(dataclasses.replace(tiny_spec, embed_dim=96, num_heads=3), num_classes=10)
    path = tmp_path / "wide.safetensors"
    save_weights(wider, path)
    with pytest.raises(ConfigError, match=r"does not fit the backbone: \d+ shape mismatches, e.g. "):
        load_weights(model, path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_weights(model, tmp_path / "missing.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ConfigError, match="cannot read weights file"):
        load_weights(model, garbage)
    bad_suffix = tmp_path / "w.npz"
    bad_suffix.write_bytes(b"")
    with pytest.raises(ConfigError, match="has suffix '.npz'; valid: .safetensors"):
        load_weights(model, bad_suffix)


@pytest.mark.parametrize("variant", [
    {}, {"qkv_bias": False}, {"qk_norm": True}, {"init_values": 0.1}, {"scale_attn_norm": True},
    {"scale_mlp_norm": True}, {"class_token": False, "global_pool": "avg"}, {"reg_tokens": 4},
    {"no_embed_class": True}, {"gated": True},
])
def test_cls_embedding_runs_the_last_block_for_the_first_token_only(variant: dict) -> None:
    import timm

    gated = variant.pop("gated", False)
    torch.manual_seed(0)
    model = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=4,
                              embed_dim=64, depth=2, num_heads=2, **variant).eval()
    if gated:  # timm's Attention(gated=True): a sigmoid gate on the attention output
        for block in model.blocks:
            block.attn.gate = torch.nn.Linear(64, 64)
    if "init_values" in variant:  # layer scale starts as a constant: make each channel differ
        for block in model.blocks:
            block.ls1.gamma.data.uniform_(0.05, 0.5)
            block.ls2.gamma.data.uniform_(0.05, 0.5)
    seen = []
    hook = model.blocks[-1].mlp.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape))
    x = torch.rand(5, 3, 32, 32)
    with torch.no_grad():
        got = cls_embedding(model, x)
        expected = model.forward_features(x)[:, 0]
    hook.remove()
    assert seen[0] == (5, 1, 64)  # the last block's MLP saw the first token only
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_cls_embedding_runs_forward_features_in_training_mode_or_for_other_classes(model: torch.nn.Module) -> None:
    import copy

    class Shifted(type(model)):
        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            return super().forward_features(x) + 1.0

    shifted = copy.deepcopy(model)
    shifted.__class__ = Shifted
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(cls_embedding(shifted, x), model.forward_features(x)[:, 0] + 1.0,
                                   rtol=1e-5, atol=1e-5)
    seen = []
    hook = model.blocks[-1].mlp.register_forward_pre_hook(lambda m, args: seen.append(args[0].shape[1]))
    model.train()
    cls_embedding(model, x)
    hook.remove()
    assert seen == [65]  # every token: dropout and the like belong to the whole forward
