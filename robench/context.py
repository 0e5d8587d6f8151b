"""The fit context: everything a method may use, and nothing it did not declare.

A method receives a :class:`FitContext` in ``fit``. It hands out a fresh copy of the pretrained
backbone, the compute budget (optimiser steps, batch size) and batches of distorted training
images. Clean images and labels are handed out only to methods that declared them
(``uses_clean_images``, ``uses_labels``); labels exist in the context only for the labelled
subset chosen by the label budget, so labels beyond the budget are not reachable at all.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from tqdm.auto import tqdm

from robench.data import augment_geometric, distort_mixed, distortion_seeds, to_device, to_float
from robench.errors import SupervisionError
from robench.rng import BatchRNG, derive_seed, sample_seeds

if TYPE_CHECKING:
    from torch import nn

    from robench.api import Distortion, Method

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Batch:
    """One training batch, on the context's device.

    Attributes:
        images: distorted images, float32 ``(B, 3, H, W)`` in [0, 1].
        severities: the severity applied to each image, int64 ``(B,)``.
        indices: positions of the images in the train split, int64 ``(B,)``.
        labels: int64 ``(B,)``, only for methods that declared ``uses_labels`` and asked for
            labelled batches; otherwise None.
        clean: the same images before distortion (same geometric augmentation), only for methods
            that declared ``uses_clean_images`` and asked for them; otherwise None.
        variants: with ``batches(variants=K)``, which of the image's K fixed augmentations each
            image got (so outputs of a frozen model on ``clean`` can be cached per (index, variant)).
        host_indices, host_variants: ``indices`` and ``variants`` on the CPU, for bookkeeping that
            must not wait for the device.
    """

    images: torch.Tensor
    severities: torch.Tensor
    indices: torch.Tensor
    labels: torch.Tensor | None = None
    clean: torch.Tensor | None = None
    variants: torch.Tensor | None = None
    host_indices: torch.Tensor | None = None
    host_variants: torch.Tensor | None = None


class FitContext:
    """What the harness hands to :meth:`robench.api.Method.fit`.

    Attributes:
        backbone: a fresh copy of the pretrained encoder (a timm Vision Transformer) on ``device``;
            the method may train it in place and return it.
        num_classes: number of classes of the dataset.
        device: where tensors live and training runs.
        steps: optimiser steps the method may take (the same budget for every method).
        batch_size: batch size for those steps.
        seed: the cell's seed; use :meth:`generator` for the method's own randomness.
        distortion: the distortion this cell adapts to.
        severities: severities under evaluation; training draws from them.
        dataset: dataset name.
        label_fraction: fraction of the train split that is labelled.
        num_train: size of the train split.
        num_labelled: size of the labelled subset.
        history: per-step or per-epoch records the method logs with :meth:`log`.
        show_progress: whether to draw progress bars.
    """

    def __init__(
        self,
        *,
        method: Method,
        backbone: nn.Module,
        train_images: torch.Tensor,
        labelled_indices: torch.Tensor,
        labelled_labels: torch.Tensor,
        num_classes: int,
        hflip: bool,
        distortion: Distortion,
        severities: tuple[int, ...],
        dataset: str,
        label_fraction: float,
        seed: int,
        steps: int,
        batch_size: int,
        device: torch.device,
        show_progress: bool = False,
        compile: bool = False,
    ) -> None:
        self.backbone = backbone
        self.num_classes = num_classes
        self.device = device
        self.steps = steps
        self.batch_size = batch_size
        self.seed = seed
        self.distortion = distortion
        self.severities = tuple(severities)
        self.dataset = dataset
        self.label_fraction = label_fraction
        self.num_train = int(train_images.shape[0])
        self.num_labelled = int(labelled_indices.numel())
        self.history: list[dict[str, Any]] = []
        self.show_progress = show_progress
        self.compile = compile
        self._method_name = method.name
        self._uses_clean = bool(method.uses_clean_images)
        self._uses_labels = bool(method.uses_labels)
        self._hflip = hflip
        self._images = train_images
        self._labelled_indices = labelled_indices.to(device)
        self._labelled_cpu = labelled_indices.cpu()
        # Labels of the unlabelled part never enter the context; unlabelled-only methods get none.
        self._labelled_labels = labelled_labels.to(device) if self._uses_labels else None
        self._streams = 0

    def batches(
        self,
        *,
        labelled: bool = False,
        clean: bool = False,
        steps: int | None = None,
        batch_size: int | None = None,
        augment: bool = True,
        severity: int | None = None,
        variants: int | None = None,
    ) -> Iterator[Batch]:
        """Yield training batches of distorted images.

        The order of the images and their geometric augmentation depend on the cell's seed,
        dataset and method but not on its distortion, so the cells of one method and seed see the
        same clean images in the same order whatever their distortion (which lets a method train
        several distortions' students on one teacher pass); the distortion's random draws are
        per distortion and per step.

        Args:
            labelled: draw from the labelled subset and include labels (needs ``uses_labels``);
                otherwise draw from the whole train split without labels.
            clean: include the clean images (needs ``uses_clean_images``).
            steps: number of batches (default: ``self.steps``).
            batch_size: default ``self.batch_size``; capped at the pool size.
            augment: random translation (and flip where the dataset allows it), applied to the
                clean image before distortion, so clean and distorted views share geometry.
            severity: a fixed severity; by default each image draws one from ``self.severities``.
            variants: if given, each image's augmentation is one of ``variants`` fixed ones per
                image (drawn per step; reported in ``Batch.variants``) instead of a fresh one.

        Raises:
            SupervisionError: if the method asks for data it did not declare.
        """
        if labelled and not self._uses_labels:
            raise SupervisionError(
                f"method {self._method_name!r} asked for labels but does not declare uses_labels = True"
            )
        if clean and not self._uses_clean:
            raise SupervisionError(
                f"method {self._method_name!r} asked for clean images but does not declare "
                "uses_clean_images = True"
            )
        if severity is not None:
            self.distortion.check_severity(severity, source=f"method {self._method_name!r}")
        if variants is not None and variants < 1:
            raise ValueError(f"variants must be at least 1, got {variants}")
        self._streams += 1
        return self._generate(
            labelled, clean, steps or self.steps, batch_size or self.batch_size, augment,
            severity, self._streams, variants,
        )

    def compiled(self, model: nn.Module) -> nn.Module:
        """``model`` under ``torch.compile`` when the run asked for it (``--compile``), falling
        back to eager execution, with a warning, wherever compilation fails."""
        if not self.compile:
            return model
        from robench.training import CompiledOrEager

        return CompiledOrEager(model)

    def generator(self, *parts: object) -> torch.Generator:
        """A CPU ``torch.Generator`` seeded from the cell seed, the method and ``parts``."""
        return torch.Generator().manual_seed(self.derive_seed(*parts))

    def derive_seed(self, *parts: object) -> int:
        """A seed derived from the cell (dataset, distortion, method, seed) and ``parts``."""
        return derive_seed(self.seed, self.dataset, self.distortion.name, self._method_name, *parts)

    def _clean_seed(self, *parts: object) -> int:
        """A seed of the clean data stream: the cell without its distortion."""
        return derive_seed(self.seed, self.dataset, self._method_name, *parts)

    def log(self, **record: Any) -> None:
        """Record training metrics (e.g. ``step=10, loss=0.3``); kept in the cell result."""
        clean = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        self.history.append(clean)
        logger.debug("%s: %s", self._method_name, clean)

    def _generate(
        self, labelled: bool, clean: bool, steps: int, batch_size: int, augment: bool,
        severity: int | None, stream: int, variants: int | None,
    ) -> Iterator[Batch]:
        # Per-sample bookkeeping (indices, seeds, shifts, flips, severities: a few numbers per
        # image) runs on the CPU and reaches the device in small asynchronous copies, so the host
        # never waits for the device; pixels are gathered and augmented as uint8 on the device.
        pool = self._labelled_cpu if labelled else torch.arange(self.num_train)
        batch_size = min(batch_size, pool.numel())
        order_seed = self._clean_seed("order", stream)
        order = _IndexStream(pool.numel(), torch.Generator().manual_seed(order_seed))
        progress = tqdm(
            range(steps), desc=self._method_name, unit="step", leave=False,
            disable=not self.show_progress,
        )
        for step in progress:
            positions = order.take(batch_size)
            indices = pool[positions]
            rng = BatchRNG(sample_seeds(self._clean_seed("batch", stream, step), indices))
            chosen = rng.integers(0, variants) if variants else None
            on_device = to_device(indices, self.device)
            source = on_device if on_device.device == self._images.device else to_device(indices, self._images.device)
            images = self._images[source].to(self.device, non_blocking=True)
            if augment:
                # a fixed variant's augmentation depends only on (image, variant), not on the step
                view = BatchRNG(sample_seeds(self._clean_seed("variant"), indices * variants + chosen)) \
                    if variants else rng
                images = augment_geometric(images, view, hflip=self._hflip)
            images = to_float(images)
            severities = self._severities_for(rng, severity)
            seeds = distortion_seeds(
                self.seed, self.dataset, f"train-{stream}-{step}", self.distortion.name, 0, indices
            )
            distorted = distort_mixed(self.distortion, images, severities, seeds)
            yield Batch(
                images=distorted,
                severities=to_device(severities, self.device),
                indices=on_device,
                labels=self._labelled_labels[to_device(positions, self.device)] if labelled else None,
                clean=images if clean else None,
                variants=to_device(chosen, self.device) if variants else None,
                host_indices=indices,
                host_variants=chosen,
            )

    def _severities_for(self, rng: BatchRNG, severity: int | None) -> torch.Tensor:
        """One severity per image, on the CPU (where ``rng`` draws)."""
        if severity is not None:
            return torch.full((rng.batch_size,), severity, dtype=torch.int64)
        choices = torch.tensor(self.severities, dtype=torch.int64)
        return choices[rng.integers(0, len(choices))]


class _IndexStream:
    """Positions (on the CPU) from successive seeded permutations of ``range(n)``, taken in slices."""

    def __init__(self, n: int, generator: torch.Generator) -> None:
        self._n = n
        self._gen = generator
        self._buffer = torch.empty(0, dtype=torch.int64)

    def take(self, count: int) -> torch.Tensor:
        while self._buffer.numel() < count:
            self._buffer = torch.cat([self._buffer, torch.randperm(self._n, generator=self._gen)])
        out, self._buffer = self._buffer[:count], self._buffer[count:]
        return out
