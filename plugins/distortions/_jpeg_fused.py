"""jpeg_compression's pixel steps as fused GPU kernels (Triton), around its block transforms.

The torch path of :mod:`._jpeg` spends most of a GPU's time outside its DCTs: some 50
elementwise passes for the colour conversion, the edge replication, the chroma down- and
upsampling and the copies to and from 8x8 blocks. Here one kernel goes from the float RGB
images to the float64 blocks of Y and of the subsampled Cb, Cr (as ``_to_blocks`` lays them out),
and one from the decoded blocks back to RGB: libjpeg's integer arithmetic as the torch path has
it, so both equal it bit for bit. Each returns ``None`` (False) when its kernel is unavailable or
fails, and the caller then takes the torch path.
"""

from __future__ import annotations

import torch

from robench.fused import FusedKernel, tl, triton

if triton is not None:
    from robench.fused import round_half_even

ENCODE = FusedKernel("jpeg encode")
DECODE = FusedKernel("jpeg decode")


def block_grids(h: int, w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(rows, columns) of 8x8 blocks of the luma plane (padded to whole blocks) and of the
    chroma planes (subsampled, padded to whole 16 x 16 MCUs of the image)."""
    return (-(-h // 8), -(-w // 8)), (-(-h // 16), (w + (-w % 16)) // 16)


def encode(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """Float32 ``(B, 3, H, W)`` in [0, 1] -> the float64 ``(N, 64)`` blocks of Y ``(B, ...)``
    and of Cb, Cr ``(B, 2, ...)``: uint8 levels, jccolor.c's YCbCr, edge replication to whole
    blocks, and h2v2 downsampling with its 1, 2 bias, as ``_jpeg._roundtrip`` builds them."""
    if images.dtype != torch.float32 or not ENCODE.available(images.device):
        return None
    images = images.contiguous()
    b, _, h, w = images.shape
    (lm, ln), (cm, cn) = block_grids(h, w)
    luma = torch.empty((b * lm * ln, 64), dtype=torch.float64, device=images.device)
    chroma = torch.empty((b * 2 * cm * cn, 64), dtype=torch.float64, device=images.device)
    if not ENCODE.launch(_luma_kernel, luma.numel(), 512, images, luma, luma.numel(), h, w, lm, ln):
        return None
    if not ENCODE.launch(_chroma_kernel, chroma.numel(), 512, images, chroma, chroma.numel(), h, w, cm, cn):
        return None
    return luma, chroma


def decode(luma: torch.Tensor, chroma: torch.Tensor, out: torch.Tensor) -> bool:
    """The decoded float64 blocks of :func:`encode`'s layout -> RGB in [0, 1] written to float32
    ``out`` ``(B, 3, H, W)``: h2v2 fancy upsampling of the chroma cropped to the image, jdcolor.c's
    YCbCr -> RGB, clamping, and the exact division by 255."""
    if out.dtype != torch.float32 or not out.is_contiguous() or not DECODE.available(out.device):
        return False
    b, _, h, w = out.shape
    (lm, ln), (cm, cn) = block_grids(h, w)
    return DECODE.launch(_decode_kernel, b * h * w, 512, luma, chroma, out, b * h * w, h, w, lm, ln, cm, cn,
                         enable_fp_fusion=False)


if triton is not None:

    @triton.jit
    def _level(images_ptr, plane, y, x, h, w, mask):
        """uint8 level of the image value at (y, x) of ``plane``, clamped into the image, as
        ``images.mul(255).round_().clamp_(0, 255)`` (ties to even), int32."""
        y = tl.minimum(y, h - 1)
        x = tl.minimum(x, w - 1)
        value = tl.load(images_ptr + (plane * h + y) * w + x, mask=mask, other=0.0) * 255.0
        rounded = round_half_even(tl.minimum(tl.maximum(value, -1.0), 256.0))  # (the clamp keeps it exact)
        return tl.minimum(tl.maximum(rounded, 0.0), 255.0).to(tl.int32)

    @triton.jit
    def _chroma_at(images_ptr, image, y, x, h, w, red, green, blue, mask):
        """jccolor.c's Cb or Cr (by its coefficients ``red``, ``green``, ``blue``, per lane) of the
        pixel at (y, x), clamped into the image."""
        r = _level(images_ptr, image * 3, y, x, h, w, mask)
        g = _level(images_ptr, image * 3 + 1, y, x, h, w, mask)
        b = _level(images_ptr, image * 3 + 2, y, x, h, w, mask)
        offset = (128 << 16) + (1 << 15) - 1  # 128 << 16 and a rounding half minus one
        return (red * r + green * g + blue * b + offset) >> 16  # integers: any order is exact

    @triton.jit(do_not_specialize=["total", "h", "w", "lm", "ln"])
    def _luma_kernel(images_ptr, luma_ptr, total, h, w, lm, ln, BLOCK: tl.constexpr):
        """One value of a Y block: block (image, row, column) of ``lm`` x ``ln``, element r * 8 + c."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        block, element = lane // 64, (lane % 64).to(tl.int32)
        image = block // (lm * ln)
        y = ((block // ln) % lm).to(tl.int32) * 8 + element // 8
        x = (block % ln).to(tl.int32) * 8 + element % 8
        r = _level(images_ptr, image * 3, y, x, h, w, mask)
        g = _level(images_ptr, image * 3 + 1, y, x, h, w, mask)
        b = _level(images_ptr, image * 3 + 2, y, x, h, w, mask)
        luma = (19595 * r + 38470 * g + 7471 * b + (1 << 15)) >> 16
        tl.store(luma_ptr + lane, luma.to(tl.float64), mask=mask)

    @triton.jit(do_not_specialize=["total", "h", "w", "cm", "cn"])
    def _chroma_kernel(images_ptr, chroma_ptr, total, h, w, cm, cn, BLOCK: tl.constexpr):
        """One value of a Cb or Cr block (``cm`` x ``cn`` per plane): the mean of its 2x2 pixels
        with bias 1, 2 alternating along the row, right-shifted by 2. Rows past the image's
        last pair repeat the last averaged row (libjpeg completes an MCU with averaged rows);
        pixels past the image repeat its edge."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        block, element = lane // 64, (lane % 64).to(tl.int32)
        plane = block // (cm * cn)  # image * 2 + component
        image = plane // 2
        row = tl.minimum(((block // cn) % cm).to(tl.int32) * 8 + element // 8, (h + 1) // 2 - 1)
        col = (block % cn).to(tl.int32) * 8 + element % 8
        is_cr = (plane % 2) == 1  # Cr: 32768 R - 27439 G - 5329 B; Cb: -11059 R - 21709 G + 32768 B
        red, green, blue = tl.where(is_cr, 32768, -11059), tl.where(is_cr, -27439, -21709), tl.where(is_cr, -5329, 32768)
        total = (_chroma_at(images_ptr, image, 2 * row, 2 * col, h, w, red, green, blue, mask)
                 + _chroma_at(images_ptr, image, 2 * row, 2 * col + 1, h, w, red, green, blue, mask)
                 + _chroma_at(images_ptr, image, 2 * row + 1, 2 * col, h, w, red, green, blue, mask)
                 + _chroma_at(images_ptr, image, 2 * row + 1, 2 * col + 1, h, w, red, green, blue, mask))
        value = (total + 1 + col % 2) >> 2
        tl.store(chroma_ptr + lane, value.to(tl.float64), mask=mask)

    @triton.jit
    def _decoded_chroma(chroma_ptr, plane, i, j, cm, cn, mask):
        """The decoded chroma sample (i, j) of ``plane`` (image * 2 + component), int32."""
        block = (plane * cm + i // 8) * cn + j // 8
        return tl.load(chroma_ptr + block * 64 + (i % 8) * 8 + j % 8, mask=mask, other=0.0).to(tl.int32)

    @triton.jit
    def _column_sum(chroma_ptr, plane, i, far_i, j, cm, cn, mask):
        """libjpeg's vertical triangle step: 3 x the nearer row's sample + the farther row's."""
        return (3 * _decoded_chroma(chroma_ptr, plane, i, j, cm, cn, mask)
                + _decoded_chroma(chroma_ptr, plane, far_i, j, cm, cn, mask))

    @triton.jit
    def _upsampled(chroma_ptr, plane, y, x, ch, cw, cm, cn, mask):
        """h2v2_fancy_upsample of the chroma plane cropped to ``ch`` x ``cw`` at pixel (y, x):
        the triangle filter with biases 8 (even columns) and 7 (odd), edges replicated; pixel
        replication for planes at most 2 samples wide, as libjpeg."""
        i, j = y // 2, x // 2
        far_i = tl.minimum(tl.maximum(tl.where(y % 2 == 0, i - 1, i + 1), 0), ch - 1)
        far_j = tl.minimum(tl.maximum(tl.where(x % 2 == 0, j - 1, j + 1), 0), cw - 1)
        near = _column_sum(chroma_ptr, plane, i, far_i, j, cm, cn, mask)
        far = _column_sum(chroma_ptr, plane, i, far_i, far_j, cm, cn, mask)
        fancy = (3 * near + far + tl.where(x % 2 == 0, 8, 7)) >> 4
        return tl.where(cw <= 2, _decoded_chroma(chroma_ptr, plane, i, j, cm, cn, mask), fancy)

    @triton.jit(do_not_specialize=["total", "h", "w", "lm", "ln", "cm", "cn"])
    def _decode_kernel(luma_ptr, chroma_ptr, out_ptr, total, h, w, lm, ln, cm, cn, BLOCK: tl.constexpr):
        """One pixel's R, G, B from the decoded Y and upsampled Cb, Cr (jdcolor.c), clamped and
        divided by 255 (correctly rounded, as torch divides)."""
        lane = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = lane < total
        image = lane // (h * w)
        pixel = (lane % (h * w)).to(tl.int32)
        y, x = pixel // w, pixel % w
        luma_block = (image * lm + y // 8) * ln + x // 8
        luma = tl.load(luma_ptr + luma_block * 64 + (y % 8) * 8 + x % 8, mask=mask, other=0.0).to(tl.int32)
        ch, cw = (h + 1) // 2, (w + 1) // 2
        cb = _upsampled(chroma_ptr, image * 2, y, x, ch, cw, cm, cn, mask) - 128
        cr = _upsampled(chroma_ptr, image * 2 + 1, y, x, ch, cw, cm, cn, mask) - 128
        red = luma + ((91881 * cr + (1 << 15)) >> 16)
        green = luma + ((-22554 * cb - 46802 * cr + (1 << 15)) >> 16)
        blue = luma + ((116130 * cb + (1 << 15)) >> 16)
        base = out_ptr + image * 3 * (h * w) + pixel
        tl.store(base, tl.math.div_rn(tl.minimum(tl.maximum(red, 0), 255).to(tl.float32), 255.0), mask=mask)
        tl.store(base + h * w, tl.math.div_rn(tl.minimum(tl.maximum(green, 0), 255).to(tl.float32), 255.0),
                 mask=mask)
        tl.store(base + 2 * h * w, tl.math.div_rn(tl.minimum(tl.maximum(blue, 0), 255).to(tl.float32), 255.0),
                 mask=mask)
