"""Test helpers: real images, and the reference corruptions of ``imagecorruptions`` 1.1.2.

imagecorruptions is the package behind the published ImageNet-C numbers. On the current stack it
does not import (``pkg_resources`` is gone from setuptools), ``fog`` uses ``np.float_`` (removed in
NumPy 2) and ``glass_blur`` / ``gaussian_blur`` pass ``multichannel`` (removed from
scikit-image). The shims below restore exactly those three names, nothing else, so the reference
runs its own code unchanged.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import types
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

DATA = Path(__file__).parent / "data" / "cifar10_test_sample.npz"


def real_images(count: int = 16, size: int = 32) -> torch.Tensor:
    """``count`` real CIFAR-10 test images as float32 ``(B, 3, size, size)`` in [0, 1], on exact
    uint8 levels (bicubic-upsampled and re-quantised when ``size`` is not 32)."""
    with np.load(DATA, allow_pickle=False) as data:
        images = torch.from_numpy(data["images"][:count]).permute(0, 3, 1, 2).contiguous().float() / 255
    if size != images.shape[-1]:
        images = F.interpolate(images, size=(size, size), mode="bicubic", align_corners=False)
    return (images.clamp(0, 1) * 255).round() / 255


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """float ``(B, 3, H, W)`` in [0, 1] on uint8 levels -> uint8 ``(B, H, W, 3)``."""
    return (images * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


@functools.lru_cache(maxsize=1)
def imagecorruptions() -> types.ModuleType:
    """The reference package, importable on the current stack (see the module docstring)."""
    shim = types.ModuleType("pkg_resources")

    def resource_filename(package: str, resource: str) -> str:
        origin = importlib.util.find_spec(package).origin
        return os.path.join(os.path.dirname(origin), resource)

    shim.resource_filename = resource_filename
    # only while imagecorruptions imports (it binds resource_filename then); other code, pytest
    # included, must not see a fake pkg_resources
    real = sys.modules.get("pkg_resources")
    sys.modules["pkg_resources"] = shim
    try:
        import imagecorruptions as ic
    finally:
        if real is None:
            del sys.modules["pkg_resources"]
        else:
            sys.modules["pkg_resources"] = real
    if not hasattr(np, "float_"):
        np.float_ = np.float64
    from skimage.filters import gaussian

    def gaussian_multichannel(image, sigma=1, multichannel=None, **kwargs):
        if multichannel:
            kwargs["channel_axis"] = -1
        return gaussian(image, sigma=sigma, **kwargs)

    ic.corruptions.gaussian = gaussian_multichannel
    return ic


def reference(name: str, images: torch.Tensor, severity: int, seed: int = 0) -> torch.Tensor:
    """imagecorruptions' output (its 224-px parameters) for each image, as float ``(B, 3, H, W)``
    in [0, 1] (the reference returns uint8, truncated)."""
    ic = imagecorruptions()
    np.random.seed(seed)
    out = [ic.corrupt(image, severity, corruption_name=name) for image in to_uint8_hwc(images)]
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255


def psnr(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of images in [0, 1]."""
    mse = (a - b).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(1 / mse)
