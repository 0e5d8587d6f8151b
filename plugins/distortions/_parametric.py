"""Bases for distortions that distort a batch of mixed severities in one pass."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch

from robench.api import BatchRNG, Distortion


class OneParameter(Distortion):
    """A distortion whose severity selects one number from :meth:`parameters`.

    :meth:`distort` takes that number as a Python scalar (one severity) or as a per-sample
    ``(B, 1, 1, 1)`` tensor (mixed severities, :meth:`Distortion.apply_mixed`); written with
    broadcasting arithmetic, both give the same pixels.
    """

    @abstractmethod
    def parameters(self, height: int, width: int) -> Sequence[float]:
        """The parameter of each severity, for images of this size."""

    @abstractmethod
    def distort(self, images: torch.Tensor, parameter: float | torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        """Distort ``images`` with ``parameter``, a scalar or a ``(B, 1, 1, 1)`` tensor."""

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        return self.distort(images, self.parameters(*images.shape[-2:])[severity - 1], rng)

    def apply_mixed(self, images: torch.Tensor, severities: torch.Tensor, rng: BatchRNG) -> torch.Tensor:
        values = self.per_sample(self.parameters(*images.shape[-2:]), severities, images)
        return self.distort(images, values, rng)


class MixedPass(Distortion):
    """A distortion written once, for a batch of mixed severities (:meth:`apply_mixed`): one
    severity runs the same code with every sample at it, so a mixed batch gives each sample
    exactly what its severity gives alone, by construction."""

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        return self.apply_mixed(images, torch.full((images.shape[0],), severity), rng)
