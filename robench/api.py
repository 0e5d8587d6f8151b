"""The public plugin API: what a distortion, method or dataset plugin imports.

A plugin subclasses one of :class:`Distortion`, :class:`Method` or :class:`Dataset` and returns the
class from the matching hook (see :mod:`robench.hookspecs`), decorated with :data:`hookimpl`::

    from robench.api import Distortion, hookimpl

    class Invert(Distortion):
        \"\"\"Blend towards the photographic negative.\"\"\"
        name = "invert"
        group = "digital"

        def apply(self, images, severity, rng):
            alpha = severity / 5
            return (1 - alpha) * images + alpha * (1 - images)

    @hookimpl
    def robench_distortions():
        return [Invert]
"""

from __future__ import annotations

import functools
import re
from abc import ABC, abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch

from robench import host_memory
from robench.backbone import ViTFeatures, extract_features
from robench.context import Batch, FitContext
from robench.data import to_device
from robench.errors import ConfigError, PluginError, RobenchError, SupervisionError
from robench.hookspecs import hookimpl
from robench.rng import BatchRNG
from robench.training import autocast, clip_and_step, cosine_schedule, make_optimizer

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    from torch import nn

    from robench.cells import CellStatus, CellTask
    from robench.config import RunConfig

__all__ = [
    "Batch",
    "BatchRNG",
    "ConfigError",
    "Dataset",
    "Distortion",
    "Executor",
    "FitContext",
    "Method",
    "PluginError",
    "RobenchError",
    "SEVERITY_TABLES",
    "SupervisionError",
    "ViTFeatures",
    "autocast",
    "clip_and_step",
    "cosine_schedule",
    "default_data_root",
    "extract_features",
    "files_fingerprint",
    "hookimpl",
    "make_optimizer",
    "severity_table",
    "to_device",
]

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class _Plugin:
    """Behaviour shared by every plugin class: a registry name and a one-line description."""

    name: ClassVar[str]

    @classmethod
    def description(cls) -> str:
        """The first line of the class docstring."""
        doc = (cls.__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""

    @classmethod
    def check_name(cls) -> None:
        """Raise :class:`PluginError` unless ``name`` is a lowercase snake-case identifier."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not _NAME_RE.match(name):
            raise PluginError(
                f"plugin class {cls.__module__}.{cls.__qualname__} has name {name!r}; "
                "a name must be lowercase snake case, e.g. 'gaussian_noise'"
            )


SEVERITY_TABLES = ("imagenet-c", "cifar-10-c")
CPU_CHUNK_VALUES = 1 << 20  # Distortion.cpu_chunk_values where freed host memory goes back to the OS
CPU_CHUNK_VALUES_KEPT = 1 << 23  # and where it is kept for reuse (robench.host_memory)

def severity_table(height: int, width: int) -> str:
    """Which severity table a corruption uses for images of this size.

    Images whose shorter side is at least 96 px use the ImageNet-C (224 px) parameters; smaller
    images use the CIFAR-10-C (32 px) ones. Returns ``"imagenet-c"`` or ``"cifar-10-c"``.
    """
    return "imagenet-c" if min(height, width) >= 96 else "cifar-10-c"


class Distortion(_Plugin, ABC):
    """One corruption family with ordered severities.

    Subclasses set ``name``, ``group`` and, if not 1-5, ``severities``, and implement :meth:`apply`.
    A distortion with parameter tables per image scale lists them in ``tables`` (e.g.
    :data:`SEVERITY_TABLES`) and reads ``self.table(H, W)`` in :meth:`apply`. The harness calls the
    instance (``distortion(images, severity, rng)``), which validates the severity and the output
    contract around :meth:`apply`, and on the CPU applies it chunk by chunk.
    """

    group: ClassVar[str] = "other"
    severities: ClassVar[tuple[int, ...]] = (1, 2, 3, 4, 5)
    tables: ClassVar[tuple[str, ...]] = ()
    table_override: str | None = None

    @property
    def cpu_chunk_values(self) -> int | None:
        """On the CPU, :meth:`apply` runs on chunks of about this many values (None: the whole
        batch); per-sample seeding makes the result independent of the chunking. Where the host
        allocator hands large freed buffers back to the OS, cache-sized chunks (1 Mi values) keep
        temporaries from being page-faulted in again at every pass; under robench's allocator
        setting (:func:`robench.host_memory.keep_freed_memory`, applied by cell workers) buffers
        are reused and larger chunks (8 Mi values, 32 MiB of float32: 55 images at 224 px) are
        faster, with the resident size of a 224-px batch's temporaries bounded (2.4 GB running every
        distortion on 256 images, 3.6 GB in whole batches). A subclass may set a class attribute."""
        return CPU_CHUNK_VALUES_KEPT if host_memory.keeps_freed_memory() else CPU_CHUNK_VALUES

    @abstractmethod
    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        """Distort a batch.

        Args:
            images: float32 ``(B, 3, H, W)`` in [0, 1], on any device.
            severity: one of ``self.severities``.
            rng: per-sample random streams for this batch (``rng.batch_size == B``); all
                randomness must come from it so every method sees the same distorted pixels.

        Returns:
            A tensor of the same shape, dtype and device, with values in [0, 1]. Each sample's
            output must depend only on that sample's image and random streams.
        """

    def table(self, height: int, width: int) -> str | None:
        """The parameter table used at this image size: ``table_override`` if set, else by size
        (:func:`severity_table`); None for a distortion without tables."""
        if not self.tables:
            return None
        return self.table_override or severity_table(height, width)

    def check_severity(self, severity: int, source: str = "severity") -> None:
        """Raise :class:`ConfigError` unless ``severity`` is one this distortion offers."""
        if severity not in self.severities:
            valid = ", ".join(str(s) for s in self.severities)
            raise ConfigError(
                f"severity {severity!r} (from {source}) is not offered by distortion "
                f"{self.name!r}; valid: {valid}"
            )

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        """Optional: distort a batch with one severity per sample, in one pass.

        Args:
            images: as for :meth:`apply`.
            severities: int64 ``(B,)`` on the CPU, each one of ``self.severities``; turn a table
                into per-sample values with :meth:`per_sample`.
            rng: as for :meth:`apply`.

        Returns:
            For every sample, exactly what :meth:`apply` returns at its severity. A distortion
            that does not override this is applied once per severity present in the batch.
        """
        raise NotImplementedError

    def apply_grouped(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        """One :meth:`apply` per severity present, each on its samples (what a distortion without
        :meth:`apply_mixed` gets); for an :meth:`apply_mixed` to fall back on for the mixes it
        cannot do in one pass. Arguments as for :meth:`apply_mixed`."""
        out = torch.empty_like(images)
        parts = []
        for severity in torch.unique(severities).tolist():
            index = to_device((severities == severity).nonzero().flatten(), images.device)
            parts.append(rng.subset(index))  # every group starts at rng's streams
            out.index_copy_(0, index, self.apply(images.index_select(0, index), severity, parts[-1]))
        for part in parts:
            rng.catch_up(part)
        return out

    @property
    def mixes_severities(self) -> bool:
        """Whether :meth:`apply_mixed` is implemented (a batch of mixed severities is one pass)."""
        return type(self).apply_mixed is not Distortion.apply_mixed

    @staticmethod
    def per_sample(values: Sequence[float], severities: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """``values[severity - 1]`` for each sample, shaped ``(B, 1, 1, 1)``, on ``like``'s device
        (copied without waiting for it), in ``like``'s dtype for float values, int64 for ints."""
        dtype = torch.int64 if all(isinstance(v, int) for v in values) else like.dtype
        table = _value_table(tuple(values), dtype, like.device)
        return table.index_select(0, Distortion.severity_index(severities, like.device)).view(-1, 1, 1, 1)

    @staticmethod
    def severity_index(severities: torch.Tensor, device: torch.device) -> torch.Tensor:
        """Each sample's ``severity - 1``, int64 ``(B,)`` on ``device`` (copied without waiting
        for it): the rows to pick from a per-severity stack of kernels or matrices. A GPU's copy
        is made once per severities tensor (unless it changes in place): the many per-sample
        lookups of one mixed call cost one host-to-device copy."""
        severities = severities.cpu()
        device = torch.device(device)
        if device.type == "cpu":
            return severities.to(torch.int64) - 1
        if severities.is_inference():  # no version counter to tell whether it changed
            return to_device(severities.to(torch.int64) - 1, device)
        key = (severities._version, device)
        cached = getattr(severities, "_robench_severity_index", None)  # kept on the tensor itself
        if cached is None or cached[0] != key:
            cached = (key, to_device(severities.to(torch.int64) - 1, device))
            severities._robench_severity_index = cached
        return cached[1]

    def __call__(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        self.check_severity(severity)
        return self._run(images, rng, lambda x, rows, part: self.apply(x, severity, part))

    def call_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        """Distort sample ``b`` at ``severities[b]`` (int ``(B,)``, best on the CPU: grouping by
        severity then needs no device synchronisation), in one pass if the distortion
        :attr:`mixes_severities`, else one :meth:`apply` per severity present."""
        severities = severities.cpu().to(torch.int64)
        if severities.shape != (images.shape[0],):
            raise ValueError(f"severities of shape {tuple(severities.shape)} for a batch of {images.shape[0]}")
        present = torch.unique(severities).tolist()
        for severity in present:
            self.check_severity(severity)
        if len(present) == 1:
            return self(images, present[0], rng)
        apply = self.apply_mixed if self.mixes_severities else self.apply_grouped
        return self._run(images, rng, lambda x, rows, part: apply(x, severities[rows], part))

    def _run(self, images: torch.Tensor, rng: BatchRNG, apply: Callable[..., torch.Tensor]) -> torch.Tensor:
        """``apply(images, rows, rng)`` on the whole batch, or chunk by chunk on the CPU, with
        the output contract checked."""
        if rng.batch_size != images.shape[0]:
            raise ValueError(f"rng has {rng.batch_size} seeds for a batch of {images.shape[0]}")
        chunk = self.cpu_chunk_values if images.device.type == "cpu" else None
        step = max(1, chunk // max(1, images[0].numel())) if chunk and images.shape[0] else 0
        if not step or images.shape[0] <= step:
            out = apply(images, slice(None), rng)
        else:
            parts = []
            for start in range(0, images.shape[0], step):
                rows = slice(start, start + step)
                part = rng.subset(rows)
                parts.append(apply(images[rows], rows, part))
            rng.catch_up(part)
            out = torch.cat(parts)
        if out.shape != images.shape or out.dtype != images.dtype or out.device != images.device:
            raise PluginError(
                f"distortion {self.name!r} returned {tuple(out.shape)} {out.dtype} on {out.device} "
                f"for input {tuple(images.shape)} {images.dtype} on {images.device}; "
                "it must keep shape, dtype and device"
            )
        return out


class Dataset(_Plugin, ABC):
    """An image classification dataset with a train and a test split.

    Subclasses set ``name``, ``num_classes`` (or set it in ``__init__``) and implement :meth:`load`.
    ``hflip`` says whether a horizontal flip keeps the label (false for digits and text).
    """

    num_classes: int
    hflip: ClassVar[bool] = True
    # Set by the harness from --download: only then may load() fetch files from the network.
    download: bool = False

    def fingerprint(self, root: Path | None) -> str | None:
        """A string that changes whenever the files behind the splits change (see
        :func:`files_fingerprint`); the harness then caches the decoded, resized splits. None (the
        default) for datasets built in memory, which are not cached."""
        return None

    @abstractmethod
    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Load one split.

        Args:
            split: ``"train"`` or ``"test"``.
            root: data directory given by the user, or None for the default location.

        Returns:
            ``(images, labels)``: uint8 ``(N, 3, H, W)`` and int64 ``(N,)`` with values in
            ``[0, num_classes)``, on the CPU.
        """


def default_data_root() -> Path:
    """Where file-backed datasets look without ``--data-root``: ``$ROBENCH_DATA``, else the
    ``data`` folder of robench's cache (``$ROBENCH_CACHE``, ``~/.cache/robench``)."""
    import os

    if os.environ.get("ROBENCH_DATA"):
        return Path(os.environ["ROBENCH_DATA"]).expanduser()
    from robench.pretrain import default_cache_dir

    return default_cache_dir() / "data"


def files_fingerprint(paths: list[Path]) -> str:
    """Names, sizes and modification times of files, hashed: a cheap identity of a dataset's
    sources (no file is read)."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(paths):
        stat = path.stat()
        digest.update(f"{path.as_posix()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


class Method(_Plugin, ABC):
    """A way of adapting the pretrained encoder to distorted data.

    Subclasses set ``name`` and declare what supervision they use; the harness enforces it: a
    method that does not declare ``uses_clean_images`` never receives a clean image, and one that
    does not declare ``uses_labels`` never receives a label.
    """

    uses_clean_images: ClassVar[bool] = False
    uses_labels: ClassVar[bool] = False
    # A frozen dataclass of hyper-parameters with defaults (None: the method has none), and named
    # option sets; both are reachable from --methods as NAME[:PRESET][:KEY=VALUE]...
    Options: ClassVar[type | None] = None
    presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, options: Any = None) -> None:
        if options is None and self.Options is not None:
            options = self.Options()
        self.options = options

    @abstractmethod
    def fit(self, ctx: FitContext) -> nn.Module:
        """Adapt ``ctx.backbone`` within ``ctx.steps`` optimiser steps; return the encoder.

        The returned module is evaluated frozen, on its CLS embedding after the final norm
        (``forward_features(x)[:, 0]`` of a timm Vision Transformer).
        """


class Executor(_Plugin, ABC):
    """Where the cells of a grid run: yields each task's status as it finishes (any order).

    Subclasses set ``name`` and implement :meth:`run`, sending every task through
    :func:`robench.cells.run_cell_task` (which returns the statuses of the task's cells; results
    travel through the run directory, which all workers must see). The instance gets the run's config, whose executor fields
    (``ray_address``, ``gpus_per_cell``, ``slurm_partition``, ...) it may read.
    """

    def __init__(self, config: RunConfig) -> None:
        self.config = config

    def check(self) -> None:
        """Raise :class:`ConfigError` if this executor cannot run here (called before anything
        is written); the default accepts."""

    @abstractmethod
    def run(self, tasks: Sequence[CellTask]) -> Iterator[CellStatus]:
        """Run every task; yield the status of every cell."""


@functools.lru_cache(maxsize=256)
def _value_table(values: tuple, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """``values`` as a ``dtype`` tensor on ``device`` (floats through float64), made once."""
    table = torch.tensor(values, dtype=torch.float64 if dtype.is_floating_point else dtype)
    return to_device(table.to(dtype), device)
