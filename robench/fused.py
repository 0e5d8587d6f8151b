"""Fused GPU kernels (Triton) beside their torch paths.

Some hot paths are dozens of elementwise passes over a batch in torch; on a GPU one Triton kernel
can do them in registers and touch memory once. Each such kernel is a :class:`FusedKernel`: used
on CUDA devices when Triton imports, with the torch path as the reference it must equal (tests
compare them element for element, on a GPU and in Triton's interpreter on the CPU) and as the
fallback. ``ROBENCH_FUSED=0`` turns every fused kernel off; a kernel that fails once (a compiler
error, say) logs one warning and leaves its torch path in charge for the rest of the process.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch

logger = logging.getLogger(__name__)

try:  # Triton ships with torch's CUDA builds on Linux; elsewhere the torch paths serve
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - depends on the platform
    triton = tl = None


class FusedKernel:
    """A Triton kernel with a torch fallback: :meth:`available` says whether to launch it,
    :meth:`launch` runs it and reports failure (after which it is never used again)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.failed = False

    def available(self, device: torch.device) -> bool:
        """Whether work on ``device`` should take this kernel."""
        return (triton is not None and device.type == "cuda" and not self.failed
                and os.environ.get("ROBENCH_FUSED", "1") != "0")

    def launch(self, kernel: Any, elements: int, block: int, *args: Any, **meta: Any) -> bool:
        """``kernel`` over ``elements`` in blocks of ``block``; False (and one warning) if it fails."""
        try:
            kernel[(triton.cdiv(elements, block),)](*args, BLOCK=block, **meta)
        except Exception as error:  # noqa: BLE001 - any compiler or driver failure: fall back, once
            self.failed = True
            logger.warning("fused %s unavailable (%s: %s); using the torch path", self.name,
                           type(error).__name__, error)
            return False
        return True


if triton is not None:

    @triton.jit
    def round_half_even(x):
        """``x`` rounded to the nearest integer, ties to even (as ``torch.round``), for float32 ``x``
        with ``|x| < 2**22`` (where ``x + 0.5`` is exact)."""
        rounded = tl.floor(x + 0.5)
        return tl.where((rounded - x == 0.5) & (rounded.to(tl.int32) % 2 != 0), rounded - 1.0, rounded)
