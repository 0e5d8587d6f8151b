"""Noise corruptions (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR): the parameters of ImageNet-C and CIFAR-10-C."""

from __future__ import annotations

import torch

from robench.api import BatchRNG, Distortion, hookimpl, severity_table

# sigma of x + N(0, sigma) per severity 1-5, per table (images in [0, 1])
_GAUSSIAN_SIGMA = {
    "imagenet-c": (0.08, 0.12, 0.18, 0.26, 0.38),
    "cifar-10-c": (0.04, 0.06, 0.08, 0.09, 0.10),
}


class GaussianNoise(Distortion):
    """Additive Gaussian pixel noise, clipped to [0, 1] (ImageNet-C / CIFAR-10-C sigmas).

    Images with a shorter side of at least 96 px use the ImageNet-C sigmas, smaller ones the
    CIFAR-10-C sigmas (see :func:`robench.api.severity_table`).
    """

    name = "gaussian_noise"
    group = "noise"

    def table(self, height: int, width: int) -> str:
        return severity_table(height, width)

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        sigma = _GAUSSIAN_SIGMA[self.table(*images.shape[-2:])][severity - 1]
        noise = rng.normal(*images.shape[1:]).to(images.dtype)
        return (images + sigma * noise).clamp_(0.0, 1.0)


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [GaussianNoise]
