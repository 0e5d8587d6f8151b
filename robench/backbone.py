"""The Vision Transformer backbone: creation through timm, weight files, feature extraction.

Features come from the timm model itself: the CLS token after the final norm, the patch tokens
after the final norm, and, for chosen blocks only, the attention probabilities. Those blocks run
timm's explicit attention path for the call (so the softmax output can be read); every other
block keeps the fused scaled-dot-product kernel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import logging
import pickle
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from robench.atomic import atomic_path
from robench.errors import ConfigError

logger = logging.getLogger(__name__)

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


@dataclass(frozen=True)
class BackboneSpec:
    """A timm Vision Transformer by name, with optional size overrides.

    The default is a tiny ViT for 32x32 images: patch 4, width 64, depth 4, 2 heads.
    ``None`` keeps the timm model's own value.
    """

    model: str = "vit_tiny_patch16_224"
    img_size: int | None = 32
    patch_size: int | None = 4
    embed_dim: int | None = 64
    depth: int | None = 4
    num_heads: int | None = 2

    def overrides(self) -> dict[str, int]:
        """The keyword arguments passed to ``timm.create_model`` besides the name."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name != "model" and getattr(self, f.name) is not None
        }

    @property
    def label(self) -> str:
        """A compact, CSV-safe description, e.g. ``vit_tiny_patch16_224@img32-p4-w96-d4-h3``."""
        short = {"img_size": "img", "patch_size": "p", "embed_dim": "w", "depth": "d", "num_heads": "h"}
        parts = [f"{short[k]}{v}" for k, v in self.overrides().items()]
        return self.model + ("@" + "-".join(parts) if parts else "")

    def validate(self) -> None:
        """Raise :class:`ConfigError` for an unknown model or inconsistent sizes."""
        import timm

        names = timm.list_models("vit_*")
        if self.model not in names:
            close = difflib.get_close_matches(self.model, names, n=1, cutoff=0.6)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ConfigError(
                f"unknown backbone {self.model!r} (from --backbone).{hint} Choose a timm Vision "
                "Transformer, e.g. vit_tiny_patch16_224, vit_small_patch16_224 "
                "(all: timm.list_models('vit_*'))"
            )
        for name, value in self.overrides().items():
            if value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value}")
        if self.img_size and self.patch_size and self.img_size % self.patch_size:
            raise ConfigError(
                f"image size {self.img_size} is not a multiple of patch size {self.patch_size}"
            )
        if self.embed_dim and self.num_heads and self.embed_dim % self.num_heads:
            raise ConfigError(
                f"width {self.embed_dim} is not divisible by the number of heads {self.num_heads}"
            )


def create_backbone(spec: BackboneSpec, num_classes: int, seed: int = 0) -> nn.Module:
    """A timm ViT with a classification head of ``num_classes``, initialised from ``seed``
    (torch's global random state is left as it was)."""
    import timm

    spec.validate()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return timm.create_model(spec.model, pretrained=False, num_classes=num_classes, **spec.overrides())


def backbone_input_size(model: nn.Module) -> tuple[int, int]:
    """(H, W) the model's patch embedding expects."""
    return tuple(model.patch_embed.img_size)  # type: ignore[return-value]


def input_size(spec: BackboneSpec) -> tuple[int, int]:
    """(H, W) a backbone of ``spec`` takes: its override, else timm's default for the model."""
    import timm

    if spec.img_size:
        return (spec.img_size, spec.img_size)
    spec.validate()
    with torch.device("meta"):  # no memory, no weights: only the configuration is needed
        model = timm.create_model(spec.model, pretrained=False, **spec.overrides())
    return backbone_input_size(model)


def cls_embedding(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """The CLS token after the final norm, ``(B, D)``: robench's evaluation embedding.

    A timm ``VisionTransformer`` in eval mode whose last block is timm's own ``Block`` runs that
    block for the first token only (its keys and values still come from every token): nothing
    else of the last block reaches the CLS output, so the result is ``forward_features`` row 0 to
    float rounding, for about four fifths of the work on robench's 4-block default. Any other
    model runs ``forward_features`` whole.
    """
    if not _first_row_suffices(model):
        return model.forward_features(images)[:, 0]
    x = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(images))))
    for block in model.blocks[:-1]:
        x = block(x)
    return model.norm(_first_row_of_block(model.blocks[-1], x))[:, 0]


def _first_row_suffices(model: nn.Module) -> bool:
    """Whether :func:`cls_embedding` may run the last block for the first token only: exactly
    timm's classes (a subclass may change the forward), in eval mode (no dropout to match)."""
    from timm.models import vision_transformer as vit

    if type(model) is not vit.VisionTransformer or model.training or len(model.blocks) == 0:
        return False
    last = model.blocks[-1]
    attn = getattr(last, "attn", None)
    return (type(last) is vit.Block and type(attn) is getattr(vit, "Attention", None)
            and isinstance(attn.qkv, nn.Linear) and hasattr(attn, "head_dim"))


def _first_row_of_block(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """timm ``Block.forward`` on ``x`` ``(B, T, D)``, for output token 0 only: ``(B, 1, D)``."""
    attn = block.attn
    b, t, _ = x.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    width = heads * head_dim
    h = block.norm1(x)
    weight, bias = attn.qkv.weight, attn.qkv.bias
    q = F.linear(h[:, :1], weight[:width], None if bias is None else bias[:width])
    kv = F.linear(h, weight[width:], None if bias is None else bias[width:])
    q = attn.q_norm(q.view(b, 1, heads, head_dim).transpose(1, 2))
    kv = kv.view(b, t, 2, heads, head_dim).permute(2, 0, 3, 1, 4)
    out = F.scaled_dot_product_attention(q, attn.k_norm(kv[0]), kv[1], scale=attn.scale)
    out = out.transpose(1, 2).reshape(b, 1, width)
    out = getattr(attn, "norm", nn.Identity())(out)
    if getattr(attn, "gate", None) is not None:
        out = out * attn.gate(h[:, :1]).sigmoid()
    x0 = x[:, :1] + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(out))))
    return x0 + block.drop_path2(block.ls2(block.mlp(block.norm2(x0))))


@dataclass
class ViTFeatures:
    """Outputs of one forward pass through a ViT.

    Attributes:
        cls: CLS token after the final norm, ``(B, D)``.
        patches: patch tokens after the final norm, ``(B, N, D)`` (prefix tokens removed).
        attentions: block index -> attention probabilities ``(B, heads, T, T)`` (T = all tokens).
        tokens: block index -> the block's output tokens before the final norm, ``(B, T, D)``.
    """

    cls: torch.Tensor
    patches: torch.Tensor
    attentions: dict[int, torch.Tensor] = field(default_factory=dict)
    tokens: dict[int, torch.Tensor] = field(default_factory=dict)


def extract_features(
    model: nn.Module,
    images: torch.Tensor,
    attn_blocks: Sequence[int] = (),
    token_blocks: Sequence[int] = (),
    attn_rows: str = "all",
) -> ViTFeatures:
    """One forward pass returning CLS, patch tokens and, for chosen blocks, attention maps.

    Args:
        model: a timm VisionTransformer.
        images: float ``(B, 3, H, W)``.
        attn_blocks: blocks whose attention probabilities to return (negative counts from the
            end).
        token_blocks: blocks whose output tokens to return.
        attn_rows: ``all``: the full ``(B, heads, T, T)`` maps; the chosen blocks leave the fused
            attention kernel for this call. ``cls``: only the CLS token's row ``(B, heads, 1, T)``,
            computed beside the fused kernel from the block's own query/key projections, so
            every block stays fused and nothing T x T is materialised.

    Gradients flow through every returned tensor.
    """
    if attn_rows not in ("all", "cls"):
        raise ValueError(f"attn_rows {attn_rows!r}: choose from all, cls")
    depth = len(model.blocks)
    attn_idx = [_block_index(i, depth) for i in attn_blocks]
    token_idx = [_block_index(i, depth) for i in token_blocks]
    tokens: dict[int, torch.Tensor] = {}
    capture = _capture_attention if attn_rows == "all" else _capture_cls_attention
    with contextlib.ExitStack() as stack:
        attentions = stack.enter_context(capture(model, attn_idx))
        for i in token_idx:
            hook = model.blocks[i].register_forward_hook(_store_output(tokens, i))
            stack.callback(hook.remove)
        out = model.forward_features(images)
    prefix = getattr(model, "num_prefix_tokens", 1)
    return ViTFeatures(
        cls=out[:, 0], patches=out[:, prefix:], attentions=dict(attentions), tokens=tokens
    )


def _timm_attention(model: nn.Module, i: int) -> nn.Module:
    attn = model.blocks[i].attn
    if not hasattr(attn, "fused_attn") or not hasattr(attn, "attn_drop") or not hasattr(attn, "qkv"):
        raise ConfigError(
            f"block {i} of {type(model).__name__} has no timm Attention; attention maps "
            "need a timm VisionTransformer"
        )
    return attn


@contextlib.contextmanager
def _capture_attention(model: nn.Module, blocks: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Switch only ``blocks`` to timm's explicit attention and record their softmax output."""
    captured: dict[int, torch.Tensor] = {}
    saved: list[tuple[nn.Module, bool]] = []
    hooks = []
    try:
        for i in blocks:
            attn = _timm_attention(model, i)
            saved.append((attn, attn.fused_attn))
            attn.fused_attn = False
            # attn_drop receives the softmax probabilities in timm's explicit path
            hooks.append(attn.attn_drop.register_forward_hook(_store_input(captured, i)))
        yield captured
    finally:
        for hook in hooks:
            hook.remove()
        for attn, fused in saved:
            attn.fused_attn = fused


@contextlib.contextmanager
def _capture_cls_attention(model: nn.Module, blocks: Sequence[int]) -> Iterator[dict[int, torch.Tensor]]:
    """Record the CLS row of ``blocks``' attention, softmax(q_cls k^T * scale), from the output
    of their ``qkv`` projection (the blocks themselves keep running fused)."""
    captured: dict[int, torch.Tensor] = {}
    hooks = []
    try:
        for i in blocks:
            attn = _timm_attention(model, i)
            hooks.append(attn.qkv.register_forward_hook(_store_cls_row(captured, i, attn)))
        yield captured
    finally:
        for hook in hooks:
            hook.remove()


def _store_cls_row(store: dict[int, torch.Tensor], key: int, attn: nn.Module):
    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], qkv: torch.Tensor) -> None:
        b, n, _ = qkv.shape
        heads = attn.num_heads
        parts = qkv.reshape(b, n, 3, heads, -1)
        q = attn.q_norm(parts[:, :1, 0].transpose(1, 2))  # (B, heads, 1, D)
        k = attn.k_norm(parts[:, :, 1].transpose(1, 2))  # (B, heads, N, D)
        store[key] = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1, dtype=torch.float32)

    return hook


def _store_input(store: dict[int, torch.Tensor], key: int):
    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store[key] = args[0]

    return hook


def _store_output(store: dict[int, torch.Tensor], key: int):
    def hook(module: nn.Module, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        store[key] = output

    return hook


def _block_index(index: int, depth: int) -> int:
    if not -depth <= index < depth:
        raise ConfigError(f"block {index} does not exist; the backbone has blocks 0-{depth - 1}")
    return index % depth


# -- weight files ----------------------------------------------------------------------------------


def file_digest(path: Path) -> str:
    """The first 12 hex digits of the file's SHA-256 (identifies weights in provenance)."""
    sha = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()[:12]


def check_weights_path(path: Path, source: str = "--weights") -> None:
    """Raise :class:`ConfigError` unless ``path`` is an existing file with a known suffix."""
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} (from {source}) does not exist")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise ConfigError(
            f"weights file {str(path)!r} (from {source}) has suffix {path.suffix!r}; "
            f"valid: {', '.join(WEIGHT_SUFFIXES)}"
        )


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Read a state dict from safetensors, or a torch file with ``weights_only=True``.

    Accepts a bare state dict or one nested under ``state_dict`` / ``model``, and strips a
    ``module.`` prefix (DataParallel/DDP checkpoints).
    """
    check_weights_path(path)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, pickle.UnpicklingError, SafetensorError) as exc:
        raise ConfigError(f"cannot read weights file {str(path)!r}: {_first_line(exc)}") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ConfigError(f"weights file {str(path)!r} does not hold a state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_weights(model: nn.Module, path: Path, source: str = "--weights") -> None:
    """Load ``path`` into ``model``; a classifier head of another class count is re-initialised.

    Raises:
        ConfigError: if the file does not fit the architecture (names the first mismatches).
    """
    state = read_state_dict(path)
    own = model.state_dict()
    head = {k for k in own if k.startswith("head.")}
    mismatched = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in state.items() if k in own and k not in head and v.shape != own[k].shape
    ]
    missing = sorted(k for k in own if k not in state and k not in head)
    unexpected = sorted(k for k in state if k not in own)
    if mismatched or missing or unexpected:
        details = "; ".join(
            part for part in (
                f"{len(mismatched)} shape mismatches, e.g. {mismatched[0]}" if mismatched else "",
                f"{len(missing)} missing keys, e.g. {missing[0]}" if missing else "",
                f"{len(unexpected)} unexpected keys, e.g. {unexpected[0]}" if unexpected else "",
            ) if part
        )
        raise ConfigError(
            f"weights file {str(path)!r} (from {source}) does not fit the backbone: {details}"
        )
    keep = {k: v for k, v in state.items() if k not in head or v.shape == own[k].shape}
    if len(keep) < len(state):
        logger.info("classifier head in %s has another class count; it is re-initialised", path)
    model.load_state_dict(keep, strict=False)


def save_weights(model: nn.Module, path: Path) -> None:
    """Write the model's state dict as safetensors, atomically."""
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
