"""Per-sample random streams for batched tensor code.

Every method must see the same distorted pixels, whatever its batch size or data order. So a
sample's random draws must depend only on its own seed, not on which batch it sits in. A
:class:`BatchRNG` holds one 64-bit seed per sample and generates every draw as a counter-based
hash (SplitMix64) of (sample seed, stream, element index): fully batched integer tensor ops, the
same numbers on CPU and GPU, no Python loop over samples.

Seeds derive from names with :func:`derive_seed` (e.g. run seed, dataset, split, distortion,
severity), and per-sample seeds from a base seed and sample indices with :func:`sample_seeds`.
"""

from __future__ import annotations

import hashlib
import math

import torch

from robench import cpu_kernels, native, rng_fused

_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX1 = 0xBF58476D1CE4E5B9
_MIX2 = 0x94D049BB133111EB


def _signed(value: int) -> int:
    """An unsigned 64-bit constant as the int64 value with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >= 1 << 63 else value


def _shr(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int64 bits (torch's ``>>`` is arithmetic on signed values)."""
    return (x >> bits) & ((1 << (64 - bits)) - 1)


def mix64(x: torch.Tensor) -> torch.Tensor:
    """SplitMix64's finaliser on an int64 tensor (wrapping arithmetic): a bijective 64-bit hash."""
    x = x ^ _shr(x, 30)
    x = x * _signed(_MIX1)
    x = x ^ _shr(x, 27)
    x = x * _signed(_MIX2)
    return x ^ _shr(x, 31)


def derive_seed(*parts: object) -> int:
    """A stable non-negative 63-bit seed from any printable parts (names, ints).

    Stable across processes, Python versions and machines (unlike ``hash``).
    """
    text = "\x1f".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=8).digest(), "little") >> 1


def sample_seeds(base: int, indices: torch.Tensor) -> torch.Tensor:
    """One int64 seed per sample index, a hash of ``base`` and the index."""
    idx = indices.to(torch.int64)
    return mix64(idx * _signed(_GOLDEN) + _signed(base))


class BatchRNG:
    """Random draws for a batch where sample ``b``'s values depend only on ``seeds[b]``.

    Each call opens a new stream (a call counter enters the hash), so successive calls are
    independent, and the same sequence of calls on the same seeds gives the same values,
    on any device and for any batch composition or chunking.

    Values are 32-bit hashes (two rounds of the ``lowbias32`` integer hash, keyed by two 32-bit
    halves of a SplitMix64 hash of the sample seed and the stream) of the element counter: int32
    tensor ops only. On CUDA devices each draw is one fused Triton kernel
    (:mod:`robench.rng_fused`), on the CPU one loop in C (:mod:`robench.native`), that give the
    same values.

    Args:
        seeds: int64 tensor of shape ``(B,)``; its device is where values are generated.
    """

    def __init__(self, seeds: torch.Tensor) -> None:
        if seeds.dim() != 1:
            raise ValueError(f"seeds must be 1-D (one per sample), got shape {tuple(seeds.shape)}")
        self.seeds = seeds.to(torch.int64)
        self._calls = 0

    @property
    def batch_size(self) -> int:
        """Number of samples B."""
        return self.seeds.shape[0]

    @property
    def device(self) -> torch.device:
        """Device where values are generated."""
        return self.seeds.device

    def subset(self, mask_or_index: torch.Tensor) -> BatchRNG:
        """An RNG for a subset of the samples; its streams continue from this one's call count."""
        child = BatchRNG(self.seeds[mask_or_index])
        child._calls = self._calls
        return child

    def catch_up(self, other: BatchRNG) -> None:
        """Skip the streams that ``other`` (a subset of this RNG) has drawn since the split."""
        self._calls = max(self._calls, other._calls)

    def open_streams(self, count: int) -> int:
        """Reserve ``count`` new streams, as ``count`` draws would, and return the number of the
        first: for kernels that hash their draws in place (stream ``first + k``'s element ``i`` is
        the hash of counter ``i`` under that stream's keys; see :mod:`robench.cpu_kernels`)."""
        first = self._calls + 1
        self._calls += count
        return first

    def bits(self, *shape: int) -> torch.Tensor:
        """Uniform 32-bit hashes as int32, shape ``(B, *shape)``."""
        return self._draw((math.prod(shape),), rng_fused.BITS).view(self.batch_size, *shape)

    def uniform(self, *shape: int) -> torch.Tensor:
        """Uniform float32 values in [0, 1) with 24-bit resolution, shape ``(B, *shape)``."""
        return self._draw((math.prod(shape),), rng_fused.UNIFORM).view(self.batch_size, *shape)

    def uniform_streams(self, *sizes: int) -> torch.Tensor:
        """The values of ``len(sizes)`` successive calls ``uniform(size)``, side by side in one
        ``(B, sum(sizes))`` tensor and drawn in one pass: identical to the separate calls, in a
        handful of kernels instead of a few dozen per call (for code with many small draws)."""
        return self._draw(sizes, rng_fused.UNIFORM)

    def normal(self, *shape: int) -> torch.Tensor:
        """Standard normal float32 values, shape ``(B, *shape)``.

        Inverse-CDF sampling from 16-bit uniforms (two per hash): the 2^16 quantiles
        ``Phi^-1((i + 0.5) / 2^16)``; the largest magnitude is 4.17.
        """
        count = math.prod(shape)
        z = self._draw(((count + 1) // 2,), rng_fused.NORMAL, columns=count)
        return z.reshape(self.batch_size, *shape)

    def normal_table(self) -> torch.Tensor:
        """The float32 quantiles :meth:`normal` looks its 16-bit uniforms up in, on this device."""
        return _normal_table(self.device)

    def integers(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers uniform in [low, high), int64, shape ``(B, *shape)`` (span below 2^24)."""
        if high <= low:
            raise ValueError(f"empty range [{low}, {high})")
        span = high - low
        if span > 1 << 24:
            raise ValueError(f"range [{low}, {high}) is wider than 2^24")
        return (self.uniform(*shape) * span).to(torch.int64).clamp_(max=span - 1) + low

    def _draw(self, sizes: tuple[int, ...], mode: int, columns: int | None = None) -> torch.Tensor:
        """The draws of ``len(sizes)`` new streams of these sizes, side by side in a
        ``(B, sum(sizes))`` tensor (stream ``k``'s element ``i`` hashes counter ``i`` under keys
        derived from the sample seed and the call number), as int32 hashes, uniform floats or
        (one stream, ``columns`` values from its hashes' two halves) normal values."""
        first = self.open_streams(len(sizes))
        hashed = sum(sizes)
        layout = _stream_layout(sizes, self.device) if len(sizes) > 1 else None
        table = _normal_table(self.device) if mode == rng_fused.NORMAL else None
        if rng_fused.available(self.device):
            out = rng_fused.draw(self.seeds, first, columns or hashed, mode, layout=layout, table=table, hashed=hashed)
            if out is not None:
                return out
        elif native.available(self.device):
            return cpu_kernels.draw(self.seeds, first, columns or hashed, mode, streams=len(sizes), hashed=hashed,
                                    layout=layout, table=table)
        if layout is None:
            keys = mix64(self.seeds ^ _signed(first * _MIX1))[:, None]
        else:
            calls = torch.arange(first, first + len(sizes), device=self.device) * _signed(_MIX1)
            keys = mix64(self.seeds[:, None] ^ calls[None, :])
        low, high = _to_int32(keys), _to_int32(_shr(keys, 32))
        if layout is None:
            counter = torch.arange(hashed, device=self.device, dtype=torch.int32)
        else:
            stream, counter = layout
            low, high = low[:, stream], high[:, stream]
        x = counter[None, :] + low
        scratch = torch.empty_like(x)
        _lowbias32_(x, scratch)
        x.bitwise_xor_(high)
        x = _lowbias32_(x, scratch)
        if mode == rng_fused.BITS:
            return x
        if mode == rng_fused.UNIFORM:
            return _to_uniform(x)
        quantiles = torch.cat([x & 0xFFFF, _shr32(x, 16)], dim=1)  # low halves, then high
        z = table.index_select(0, quantiles.view(-1)).view(quantiles.shape)
        return z[:, :columns]


_C1 = 0x7FEB352D
_C2 = 0x846CA68B - (1 << 32)  # as int32
_NORMAL_TABLES: dict[torch.device, torch.Tensor] = {}
_STREAM_LAYOUTS: dict[tuple[tuple[int, ...], torch.device], tuple[torch.Tensor, torch.Tensor]] = {}


def _shr32(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Logical right shift of int32 bits."""
    return (x >> bits) & ((1 << (32 - bits)) - 1)


def _lowbias32_(x: torch.Tensor, scratch: torch.Tensor) -> torch.Tensor:
    """Chris Wellons' lowbias32 integer hash, in place on int32 (wrapping multiplication);
    ``scratch``, of the same shape, holds the shifted values."""
    for shift, multiplier in ((16, _C1), (15, _C2), (16, None)):
        torch.bitwise_right_shift(x, shift, out=scratch)
        x.bitwise_xor_(scratch.bitwise_and_((1 << (32 - shift)) - 1))  # a logical shift
        if multiplier is not None:
            x.mul_(multiplier)
    return x


def _to_uniform(bits: torch.Tensor) -> torch.Tensor:
    """Floats in [0, 1) from the top 24 bits of int32 hashes."""
    return _shr32(bits, 8).to(torch.float32).mul_(1.0 / (1 << 24))


def _stream_layout(sizes: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For streams of these sizes side by side: each column's stream and its counter in it
    (cached per layout and device, so a repeated layout costs no host-to-device copy)."""
    key = (sizes, device)
    if key not in _STREAM_LAYOUTS:
        stream = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
        starts = torch.tensor((0, *sizes[:-1])).cumsum(0)
        counter = (torch.arange(len(stream)) - starts[stream]).to(torch.int32)
        _STREAM_LAYOUTS[key] = (stream.to(device), counter.to(device))
    return _STREAM_LAYOUTS[key]


def _to_int32(x: torch.Tensor) -> torch.Tensor:
    """The low 32 bits of int64 values, as int32 with the same bits."""
    low = x & 0xFFFFFFFF
    return (low - ((low >> 31) << 32)).to(torch.int32)


def _normal_table(device: torch.device) -> torch.Tensor:
    if device not in _NORMAL_TABLES:
        levels = (torch.arange(1 << 16, dtype=torch.float64) + 0.5) / (1 << 16)
        _NORMAL_TABLES[device] = torch.special.ndtri(levels).to(torch.float32).to(device)
    return _NORMAL_TABLES[device]
