"""Constant tensors on the images' device, copied there once per device.

A tensor built on the host and copied to a GPU at every call makes the host wait for all the
work queued on the device (a copy from pageable memory synchronises), so the distortions keep
their kernels, colours and index tables in these caches. Callers must not modify them in place.
"""

from __future__ import annotations

import functools

import torch

from robench import native


@functools.lru_cache(maxsize=512)
def constant(values: tuple, device: torch.device, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``torch.tensor(values, dtype=dtype)`` on ``device``, made once."""
    return torch.tensor(values, dtype=dtype).to(device)


def launch_bound(device: torch.device) -> bool:
    """Whether kernel launches rather than arithmetic bound a distortion's work on ``device``:
    true on GPUs, false on the CPU. A mixed-severity pass that does more arithmetic than one
    pass per severity (a larger kernel, more zooms for every image) pays only where this holds."""
    return device.type != "cpu"


class WholeBatchInC:
    """Mixin for distortions whose CPU path is one loop in C (:mod:`robench.native`) that reads
    the batch once, or a few such loops: they take the whole batch at once on the CPU, where
    multi-pass torch code is fed cache-sized chunks where freed memory goes back to the OS
    (``Distortion.cpu_chunk_values``; the chunks' concatenation alone would cost a copy of the
    batch)."""

    @property
    def cpu_chunk_values(self) -> int | None:
        return None if native.available(torch.device("cpu")) else super().cpu_chunk_values
