"""Batched JPEG compress-then-decode round trip, bit-exact with Pillow on libjpeg-turbo.

Reproduces ``Image.fromarray(x).save(buf, "JPEG", quality=q)`` then ``Image.open(buf)`` with
Pillow's defaults: baseline JPEG, 4:2:0 chroma subsampling, the IJG tables scaled by quality,
and libjpeg's default "islow" integer DCT and "fancy" chroma upsampling on both sides. Every
lossy step is libjpeg's own integer arithmetic, vectorised over all images and all 8x8 blocks:

* RGB -> YCbCr with 16-bit fixed-point constants (``jccolor.c``);
* edge replication of partial MCUs and ``h2v2_downsample`` with its 1, 2 bias (``jcsample.c``,
  ``jcprepct.c``);
* ``jpeg_fdct_islow``, rounding quantisation, dequantisation and ``jpeg_idct_islow``. Each
  pass of these DCTs is an integer-matrix product followed by one right shift with rounding,
  so it runs as a float64 GEMM (exact on integers, unaffected by TF32) and a floor;
* ``h2v2_fancy_upsample`` (triangle filter with 8 / 7 biases, ``jdsample.c``) and YCbCr ->
  RGB with clamping (``jdcolor.c``).

The entropy coding is lossless and skipped. CUDA batches run in one pass, the pixel steps (colour
conversion, subsampling, the copies to and from blocks) in two fused kernels
(:mod:`._jpeg_fused`) around the DCTs' matrix products. On the CPU the same
integer steps run image by image in one loop in C (:mod:`robench.cpu_kernels`; libjpeg's own
butterflies, equal to these matrix products), or without a C compiler in sub-batches of a few
images, each fully vectorised, to keep the temporaries in cache.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch

from robench import cpu_kernels, native
from robench_plugins.distortions import _jpeg_fused

# IJG standard tables (jcparam.c), row-major (natural) order.
_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)  # fmt: skip
_CHROMA = (
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99,
) + (99,) * 32  # fmt: skip

# FIX(c) = round(c * 2**13) constants of jfdctint.c / jidctint.c
_F0298, _F0390, _F0541, _F0765, _F0899, _F1175 = 2446, 3196, 4433, 6270, 7373, 9633
_F1501, _F1847, _F1961, _F2053, _F2562, _F3072 = 12299, 15137, 16069, 16819, 20995, 25172

class _Codec(NamedTuple):
    """One component's round trip as four ``floor(blocks @ matrix + bias)`` steps (see
    :func:`_codecs`) around the quantiser ``divisor``; all float64 on one device."""

    fdct_rows: torch.Tensor
    fdct_rows_bias: torch.Tensor
    fdct_cols: torch.Tensor
    divisor: torch.Tensor
    idct_cols: torch.Tensor
    idct_rows: torch.Tensor
    idct_rows_bias: torch.Tensor
    half: torch.Tensor


def jpeg_roundtrip(images: torch.Tensor, quality: int | tuple[int, ...],
                   which: torch.Tensor | None = None) -> torch.Tensor:
    """JPEG-compress then decode a batch exactly as Pillow (libjpeg-turbo) does.

    Args:
        images: float ``(B, 3, H, W)`` in [0, 1], any ``H, W >= 1``, on the CPU or a CUDA
            device (the DCTs need float64); rounded to uint8 levels first.
        quality: Pillow/IJG quality, 0-100 (0 acts as 1, as in libjpeg); or several qualities,
            with ``which``.
        which: with several qualities, the index of each image's quality, int64 ``(B,)`` on the
            images' device: the whole batch in one pass, each image as at its own quality.

    Returns:
        The decoded images: same shape, dtype and device, on uint8 levels (k / 255).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"expected (B, 3, H, W) images, got {tuple(images.shape)}")
    qualities = quality if isinstance(quality, tuple) else (quality,)
    if not all(0 <= q <= 100 for q in qualities):
        raise ValueError(f"quality must be in 0..100, got {quality}")
    if isinstance(quality, tuple) and which is None:
        raise ValueError("several qualities need `which`, each image's index into them")
    if which is not None and which.shape != (images.shape[0],):
        raise ValueError(f"`which` must hold one index per image: shape {tuple(which.shape)} for "
                         f"{images.shape[0]} images")
    if which is not None and which.device.type == "cpu" and which.numel() and \
            not 0 <= int(which.min()) <= int(which.max()) < len(qualities):  # (on a GPU: no host wait)
        raise ValueError(f"`which` must index the {len(qualities)} qualities, got {which.tolist()}")
    if native.takes(images):  # the same integer steps, image by image in one loop in C
        return cpu_kernels.jpeg(images.detach(), *_integer_tables(qualities), which)
    # On the CPU, the Distortion base class already feeds cache-sized chunks of a large batch.
    out = torch.empty(images.shape, dtype=images.dtype, device=images.device)
    _roundtrip(images.detach(), qualities, which, out)
    return out


def _roundtrip(images: torch.Tensor, qualities: tuple[int, ...], which: torch.Tensor | None,
               out: torch.Tensor) -> None:
    """:func:`jpeg_roundtrip` of one batch, written to ``out``."""
    h, w = images.shape[-2:]
    luma, chroma_codec = _codecs(qualities, images.device)
    blocks = _jpeg_fused.encode(images)  # a GPU's kernels for the pixel steps, around the same DCTs
    if blocks is not None:
        batch = images.shape[0]
        if _jpeg_fused.decode(_code_blocks(blocks[0], luma, which, batch),
                              _code_blocks(blocks[1], chroma_codec, which, batch), out):
            return
    rgb = images.mul(255).round_().clamp_(0, 255).to(torch.int32)
    y, chroma = _rgb_to_ycbcr(rgb)
    y = _code_plane(_replicate(y, -h % 8, -w % 8), luma, which)[..., :h, :w]
    chroma = _code_plane(_downsample(chroma), chroma_codec, which)[..., : (h + 1) // 2, : (w + 1) // 2]
    _ycbcr_to_rgb(y, _upsample(chroma)[..., :h, :w], out)


def _rgb_to_ycbcr(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """int32 RGB ``(B, 3, H, W)`` -> Y ``(B, H, W)`` and CbCr ``(B, 2, H, W)``, as jccolor.c."""
    r, g, b = rgb.unbind(1)
    # the chroma offset folds in 128 << 16 and a rounding half minus one (always >= 0)
    offset = (128 << 16) + (1 << 15) - 1
    y = (19595 * r + 38470 * g + 7471 * b + (1 << 15)) >> 16
    chroma = rgb.new_empty((rgb.shape[0], 2, *rgb.shape[2:]))
    torch.add(-11059 * r - 21709 * g + offset, 32768 * b, out=chroma[:, 0]).bitwise_right_shift_(16)
    torch.sub(32768 * r - 27439 * g + offset, 5329 * b, out=chroma[:, 1]).bitwise_right_shift_(16)
    return y, chroma


def _ycbcr_to_rgb(y: torch.Tensor, chroma: torch.Tensor, out: torch.Tensor) -> None:
    """Y ``(B, H, W)`` and CbCr ``(B, 2, H, W)`` -> RGB in [0, 1] written to float ``out``, with
    jdcolor.c's rounded tables and clamping."""
    cb, cr = (chroma - 128).unbind(1)
    torch.add(y, (91881 * cr + (1 << 15)) >> 16, out=out[:, 0])
    torch.add(y, (-22554 * cb - 46802 * cr + (1 << 15)) >> 16, out=out[:, 1])
    torch.add(y, (116130 * cb + (1 << 15)) >> 16, out=out[:, 2])
    out.clamp_(0, 255).div_(torch.full((), 255.0, device=out.device))  # exact k / 255 on CUDA too


def _downsample(chroma: torch.Tensor) -> torch.Tensor:
    """2x2 chroma downsampling of a ``(..., H, W)`` plane, padded to whole MCUs as libjpeg does.

    The encoder widens the full-resolution rows to 16-pixel MCUs and pads an odd height by one
    row *before* averaging, but completes the MCU height by repeating the last *averaged* row.
    """
    h, w = chroma.shape[-2:]
    x = _replicate(chroma, h % 2, -w % 16)
    rows = x[..., 0::2, :] + x[..., 1::2, :]
    sums = rows[..., 0::2] + rows[..., 1::2]
    # h2v2_downsample's ordered-dither bias alternates 1, 2 along each row
    sums[..., 0::2] += 1
    sums[..., 1::2] += 2
    return _replicate(sums.bitwise_right_shift_(2), -(-h // 16) * 8 - sums.shape[-2], 0)


def _upsample(chroma: torch.Tensor) -> torch.Tensor:
    """libjpeg's h2v2 chroma upsampling of ``(..., h, w)`` to ``(..., 2h, 2w)``.

    The triangle filter weighs the nearer sample 3/4 in each direction, with biases 8 and 7 that
    alternate the rounding; libjpeg falls back to pixel replication for planes 1 or 2 wide.
    """
    if chroma.shape[-1] <= 2:
        return chroma.repeat_interleave(2, -2).repeat_interleave(2, -1)
    x = _replicate(chroma, 1, 1, 1, 1)
    *lead, h, w = chroma.shape
    near = 3 * x[..., 1:-1, :]
    cols = x.new_empty((*lead, 2 * h, w + 2))
    torch.add(near, x[..., :-2, :], out=cols[..., 0::2, :])
    torch.add(near, x[..., 2:, :], out=cols[..., 1::2, :])
    near = 3 * cols[..., 1:-1] + 8
    out = x.new_empty((*lead, 2 * h, 2 * w))
    torch.add(near, cols[..., :-2], out=out[..., 0::2])
    torch.add(near, cols[..., 2:], out=out[..., 1::2]).sub_(1)
    return out.bitwise_right_shift_(4)


def _code_plane(plane: torch.Tensor, codec: _Codec, which: torch.Tensor | None = None) -> torch.Tensor:
    """Encode and decode a ``(B, ..., 8m, 8n)`` int32 plane block by block with the islow DCTs,
    image ``b`` with the tables of quality ``which[b]`` (the only quality if None)."""
    return _from_blocks(_code_blocks(_to_blocks(plane), codec, which, plane.shape[0]), plane.shape)


def _code_blocks(blocks: torch.Tensor, codec: _Codec, which: torch.Tensor | None, images: int) -> torch.Tensor:
    """:func:`_code_plane` of float64 ``(N, 64)`` blocks, ``images`` images' worth in order:
    the decoded samples, same layout."""
    coef = torch.addmm(codec.fdct_rows_bias, blocks, codec.fdct_rows).floor_()
    coef = torch.addmm(codec.half, coef, codec.fdct_cols).floor_()
    # islow output is 8x the orthonormal DCT (divisor 8q); libjpeg rounds |coef| / divisor half
    # up and restores the sign, which differs from round-half-even on negative ties
    if which is None:
        levels = coef.abs().div_(codec.divisor[0]).add_(0.5).floor_().copysign_(coef)
        samples = torch.addmm(codec.half, levels, codec.idct_cols[0]).floor_()
    else:  # per image: the same exact products, batched over the images' own matrices
        coef = coef.view(images, -1, 64)
        levels = coef.abs().div_(codec.divisor[which][:, None]).add_(0.5).floor_().copysign_(coef)
        samples = torch.baddbmm(codec.half, levels, codec.idct_cols[which]).floor_().view(-1, 64)
    samples = torch.addmm(codec.idct_rows_bias, samples, codec.idct_rows).floor_()
    # libjpeg-turbo's SIMD IDCT saturates; the C range-limit table agrees for any realistic overshoot
    return samples.clamp_(0, 255)


def _to_blocks(plane: torch.Tensor) -> torch.Tensor:
    """int ``(..., 8m, 8n)`` -> float64 ``(N, 64)`` row-major 8x8 blocks, in one copy."""
    h, w = plane.shape[-2:]
    x = plane.unflatten(-1, (w // 8, 8)).unflatten(-3, (h // 8, 8)).transpose(-3, -2)
    return torch.empty(x.shape, dtype=torch.float64, device=plane.device).copy_(x).view(-1, 64)


def _from_blocks(blocks: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """Inverse of :func:`_to_blocks`: int32 plane of ``shape``."""
    h, w = shape[-2:]
    out = torch.empty(shape, dtype=torch.int32, device=blocks.device)
    view = out.unflatten(-1, (w // 8, 8)).unflatten(-3, (h // 8, 8)).transpose(-3, -2)
    view.copy_(blocks.view(view.shape))
    return out


def _replicate(x: torch.Tensor, bottom: int, right: int, top: int = 0, left: int = 0) -> torch.Tensor:
    """Edge-replication padding of the last two axes (works on integer tensors on any device)."""
    h, w = x.shape[-2:]
    if bottom or top:
        rows = torch.arange(-top, h + bottom, device=x.device).clamp_(0, h - 1)
        x = x.index_select(-2, rows)
    if right or left:
        cols = torch.arange(-left, w + right, device=x.device).clamp_(0, w - 1)
        x = x.index_select(-1, cols)
    return x


@functools.lru_cache(maxsize=64)
def _codecs(qualities: tuple[int, ...], device: torch.device) -> tuple[_Codec, _Codec]:
    """Luma and chroma codecs for ``qualities`` on ``device`` (the quality-dependent parts,
    ``divisor`` and ``idct_cols``, stacked: one row per quality).

    Each islow pass is an integer matrix followed by a rounding right shift, so it becomes
    ``floor(x @ (M * 2**-shift) + 1/2)``: power-of-two scaling keeps float64 exact. The level
    shift by 128 before the FDCT, the dequantisation and the +128 after the IDCT fold into the
    matrices and biases.
    """
    eye = torch.eye(8, dtype=torch.float64)
    fdct = _fdct_butterfly(torch.eye(8, dtype=torch.int64)).double()
    idct = _idct_butterfly(torch.eye(8, dtype=torch.int64)).double()
    fdct_rows = torch.kron(eye, fdct).T * 2.0**-11
    fdct_cols = torch.kron(fdct, eye).T * 2.0**-15
    idct_rows = torch.kron(eye, idct).T * 2.0**-18

    def codec(base: tuple[int, ...]) -> _Codec:
        tables = torch.stack([_quant_table(base, quality) for quality in qualities])  # (Q, 64)
        idct_cols = tables[:, :, None] * torch.kron(idct, eye).T * 2.0**-11
        half = torch.full((64,), 0.5, dtype=torch.float64)
        fdct_bias = half - 128 * fdct_rows.sum(0)
        parts = (fdct_rows, fdct_bias, fdct_cols, 8 * tables, idct_cols, idct_rows, half + 128, half)
        return _Codec(*(part.to(device) for part in parts))

    return codec(_LUMA), codec(_CHROMA)


@functools.lru_cache(maxsize=64)
def _integer_tables(qualities: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """The luma and chroma quantisation tables of ``qualities``, int32 ``(Q, 64)`` on the CPU."""
    return tuple(torch.stack([_quant_table(base, q) for q in qualities]).to(torch.int32) for base in (_LUMA, _CHROMA))


def _quant_table(base: tuple[int, ...], quality: int) -> torch.Tensor:
    """``base`` scaled for ``quality`` as jpeg_set_quality with force_baseline (jcparam.c)."""
    quality = min(max(quality, 1), 100)
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    table = (torch.tensor(base, dtype=torch.int64) * scale + 50) // 100
    return table.clamp_(1, 255).double()


def _fdct_butterfly(x: torch.Tensor) -> torch.Tensor:
    """One 1-D pass of jpeg_fdct_islow on the rows of ``x`` (8, n), before its final descale.

    Outputs 0 and 4 are scaled by 2**13 like the others, so that both passes become a single
    rounding shift (pass 1 shifts them left by 2 exactly, pass 2 descales them by 2).
    """
    t0, t1, t2, t3 = x[0] + x[7], x[1] + x[6], x[2] + x[5], x[3] + x[4]
    t7, t6, t5, t4 = x[0] - x[7], x[1] - x[6], x[2] - x[5], x[3] - x[4]
    t10, t13, t11, t12 = t0 + t3, t0 - t3, t1 + t2, t1 - t2
    out = [None] * 8
    out[0], out[4] = (t10 + t11) << 13, (t10 - t11) << 13
    z1 = (t12 + t13) * _F0541
    out[2], out[6] = z1 + t13 * _F0765, z1 - t12 * _F1847
    z5 = (t4 + t6 + t5 + t7) * _F1175
    z1, z2 = (t4 + t7) * -_F0899, (t5 + t6) * -_F2562
    z3, z4 = (t4 + t6) * -_F1961 + z5, (t5 + t7) * -_F0390 + z5
    out[7], out[5] = t4 * _F0298 + z1 + z3, t5 * _F2053 + z2 + z4
    out[3], out[1] = t6 * _F3072 + z2 + z3, t7 * _F1501 + z1 + z4
    return torch.stack(out)


def _idct_butterfly(d: torch.Tensor) -> torch.Tensor:
    """One 1-D pass of jpeg_idct_islow on the rows of ``d`` (8, n), before its final descale."""
    z1 = (d[2] + d[6]) * _F0541
    tmp2, tmp3 = z1 - d[6] * _F1847, z1 + d[2] * _F0765
    tmp0, tmp1 = (d[0] + d[4]) << 13, (d[0] - d[4]) << 13
    tmp10, tmp13, tmp11, tmp12 = tmp0 + tmp3, tmp0 - tmp3, tmp1 + tmp2, tmp1 - tmp2
    t0, t1, t2, t3 = d[7], d[5], d[3], d[1]
    z5 = (t0 + t2 + t1 + t3) * _F1175
    z1, z2 = (t0 + t3) * -_F0899, (t1 + t2) * -_F2562
    z3, z4 = (t0 + t2) * -_F1961 + z5, (t1 + t3) * -_F0390 + z5
    t0, t1 = t0 * _F0298 + z1 + z3, t1 * _F2053 + z2 + z4
    t2, t3 = t2 * _F3072 + z2 + z3, t3 * _F1501 + z1 + z4
    return torch.stack(
        (tmp10 + t3, tmp11 + t2, tmp12 + t1, tmp13 + t0, tmp13 - t0, tmp12 - t1, tmp11 - t2, tmp10 - t3)
    )
