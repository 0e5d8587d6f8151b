"""Blur corruptions (Hendrycks & Dietterich, 2019, "Benchmarking Neural Network Robustness to
Common Corruptions and Perturbations", ICLR): the parameters of ImageNet-C and CIFAR-10-C."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from robench.api import BatchRNG, Distortion, hookimpl, severity_table

# sigma (pixels) of the Gaussian blur per severity 1-5, per table
_GAUSSIAN_SIGMA = {
    "imagenet-c": (1.0, 2.0, 3.0, 4.0, 6.0),
    "cifar-10-c": (0.4, 0.6, 0.7, 0.8, 1.0),
}
_TRUNCATE = 4.0  # kernel radius in sigmas, as scipy.ndimage / skimage.filters.gaussian


class GaussianBlur(Distortion):
    """Gaussian blur with edge replication (the ImageNet-C validation corruption).

    Matches ``skimage.filters.gaussian`` as the reference generator calls it: mode ``nearest``,
    kernel truncated at 4 sigma. ImageNet-C sigmas for images of 96 px and up, CIFAR-10-C below.
    """

    name = "gaussian_blur"
    group = "blur"

    def table(self, height: int, width: int) -> str:
        return severity_table(height, width)

    def apply(self, images: torch.Tensor, severity: int, rng: BatchRNG) -> torch.Tensor:
        sigma = _GAUSSIAN_SIGMA[self.table(*images.shape[-2:])][severity - 1]
        return gaussian_blur(images, sigma).clamp_(0.0, 1.0)


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``(B, C, H, W)`` images with replicated borders."""
    radius = int(_TRUNCATE * sigma + 0.5)
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = (kernel / kernel.sum()).to(images.dtype)
    b, c, h, w = images.shape
    x = images.reshape(b * c, 1, h, w)
    x = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, 1, -1))
    x = F.pad(x, (0, 0, radius, radius), mode="replicate")
    x = F.conv2d(x, kernel.view(1, 1, -1, 1))
    return x.reshape(b, c, h, w)


@hookimpl
def robench_distortions() -> list[type[Distortion]]:
    return [GaussianBlur]
