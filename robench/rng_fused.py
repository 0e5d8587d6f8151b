"""One-kernel random draws for :class:`robench.rng.BatchRNG` on GPUs (Triton).

The torch path of ``BatchRNG`` derives the keys in some 25 small operators and hashes each
element counter in about 25 more (two rounds of ``lowbias32``, the key additions, the conversion
to floats or the normal table's lookup), each a full pass over the batch's memory. Here one Triton
kernel computes the keys and the hash in registers and writes only the result: the same bits,
floats and normal values as the torch path (tests compare them element for element, on a GPU and
in Triton's interpreter on the CPU).

A :class:`robench.fused.FusedKernel`: used on CUDA devices when Triton imports, else (and after
any failure) the torch path.
"""

from __future__ import annotations

import torch

from robench.fused import FusedKernel, tl, triton

BITS, UNIFORM, NORMAL = 0, 1, 2
KERNEL = FusedKernel("random draws")
_BLOCK = 1024

if triton is not None:

    @triton.jit
    def _lowbias32(x):
        x = x ^ (x >> 16)
        x = x * 0x7FEB352D
        x = x ^ (x >> 15)
        x = x * 0x846CA68B
        return x ^ (x >> 16)

    @triton.jit
    def _mix64(x):
        x = x ^ (x >> 30)
        x = x * 0xBF58476D1CE4E5B9
        x = x ^ (x >> 27)
        x = x * 0x94D049BB133111EB
        return x ^ (x >> 31)

    @triton.jit(do_not_specialize=["first", "total", "columns", "hashed"])
    def _draw_kernel(seeds_ptr, stream_ptr, counter_ptr, table_ptr, out_ptr, first, total, columns, hashed,
                     MODE: tl.constexpr, STREAMS: tl.constexpr, BLOCK: tl.constexpr):
        offsets = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
        mask = offsets < total
        row = offsets // columns
        column = offsets % columns
        if MODE == 2:  # normal: the low halves of hashes 0..hashed-1, then their high halves
            upper = column >= hashed
            column = tl.where(upper, column - hashed, column)
        if STREAMS:
            stream = tl.load(stream_ptr + column, mask=mask, other=0).to(tl.int64)
            counter = tl.load(counter_ptr + column, mask=mask, other=0).to(tl.uint32, bitcast=True)
        else:
            stream = tl.zeros_like(column)
            counter = column.to(tl.uint32)
        # the stream's key: SplitMix64 of the sample seed and the call number, split in halves
        seed = tl.load(seeds_ptr + row, mask=mask, other=0).to(tl.uint64, bitcast=True)
        key = _mix64(seed ^ ((stream + first).to(tl.uint64) * 0xBF58476D1CE4E5B9))
        low, high = key.to(tl.uint32), (key >> 32).to(tl.uint32)
        x = _lowbias32(counter + low) ^ high
        x = _lowbias32(x)
        if MODE == 0:
            tl.store(out_ptr + offsets, x.to(tl.int32, bitcast=True), mask=mask)
        elif MODE == 1:
            tl.store(out_ptr + offsets, (x >> 8).to(tl.float32) * (1.0 / 16777216.0), mask=mask)
        else:
            quantile = tl.where(upper, x >> 16, x & 0xFFFF).to(tl.int32)
            tl.store(out_ptr + offsets, tl.load(table_ptr + quantile, mask=mask, other=0.0), mask=mask)


def available(device: torch.device) -> bool:
    """Whether draws on ``device`` take the fused kernel."""
    return KERNEL.available(device)


def draw(seeds: torch.Tensor, first: int, columns: int, mode: int, *, layout=None, table=None,
         hashed: int | None = None) -> torch.Tensor | None:
    """The ``(B, columns)`` draws of streams ``first, first + 1, ...`` of the int64 sample
    ``seeds``: int32 hashes (``BITS``), floats in [0, 1) (``UNIFORM``) or normal values from
    ``table`` (``NORMAL``, the low then high 16-bit halves of ``hashed`` hashes). ``layout`` is the
    (stream, counter) of each column for several streams side by side. None if the kernel failed
    (the caller takes the torch path)."""
    batch = seeds.shape[0]
    out = torch.empty((batch, columns), dtype=torch.int32 if mode == BITS else torch.float32, device=seeds.device)
    if batch * columns == 0:
        return out
    stream, counter = layout if layout is not None else (seeds, seeds)  # unused without STREAMS
    launched = KERNEL.launch(
        _draw_kernel, batch * columns, _BLOCK, seeds.contiguous(), stream, counter,
        table if table is not None else out, out, first, batch * columns, columns, hashed or columns,
        MODE=mode, STREAMS=layout is not None,
    )
    return out if launched else None
