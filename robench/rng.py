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
    on any device and for any batch composition.

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

    def bits(self, *shape: int) -> torch.Tensor:
        """Raw 64-bit hashes, int64 tensor of shape ``(B, *shape)``."""
        self._calls += 1
        stream = mix64(self.seeds ^ _signed(self._calls * _MIX1))
        count = math.prod(shape)
        counter = torch.arange(1, count + 1, device=self.device, dtype=torch.int64)
        x = stream[:, None] + counter[None, :] * _signed(_GOLDEN)
        return mix64(x).view(self.batch_size, *shape)

    def uniform(self, *shape: int) -> torch.Tensor:
        """Uniform float32 values in [0, 1), shape ``(B, *shape)``."""
        return _shr(self.bits(*shape), 40).to(torch.float32) * (1.0 / (1 << 24))

    def normal(self, *shape: int) -> torch.Tensor:
        """Standard normal float32 values (Box-Muller), shape ``(B, *shape)``."""
        count = math.prod(shape)
        half = (count + 1) // 2
        bits = self.bits(2, half)
        # (0, 1] for the logarithm, [0, 1) for the angle
        u1 = (_shr(bits[:, 0], 40).to(torch.float32) + 1.0) * (1.0 / (1 << 24))
        u2 = _shr(bits[:, 1], 40).to(torch.float32) * (1.0 / (1 << 24))
        radius = torch.sqrt(-2.0 * torch.log(u1))
        angle = (2.0 * math.pi) * u2
        z = torch.cat([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
        return z[:, :count].reshape(self.batch_size, *shape)

    def integers(self, low: int, high: int, *shape: int) -> torch.Tensor:
        """Integers uniform in [low, high), int64, shape ``(B, *shape)``."""
        if high <= low:
            raise ValueError(f"empty range [{low}, {high})")
        span = high - low
        return (_shr(self.bits(*shape), 1) % span) + low
