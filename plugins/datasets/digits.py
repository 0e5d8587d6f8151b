"""Handwritten digits: scikit-learn's bundled copy of the UCI optical digits test set
(Alpaydin & Kaynak, 1998), 1,797 images of 8x8 pixels, here upsampled to 32x32 RGB.

Needs no download, so it is robench's default dataset.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from robench.api import ConfigError, Dataset, hookimpl

_SIZE = 32
_TEST_FRACTION = 0.3
_SPLIT_SEED = 0


class Digits(Dataset):
    """scikit-learn's 8x8 handwritten digits, upsampled to 32x32 RGB; fixed 70/30 split."""

    name = "digits"
    num_classes = 10
    hflip = False  # a mirrored digit is not the same digit

    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r} of dataset 'digits'; valid: train, test")
        bunch = load_digits()
        index = torch.arange(len(bunch.target)).numpy()
        train_idx, test_idx = train_test_split(
            index, test_size=_TEST_FRACTION, random_state=_SPLIT_SEED, stratify=bunch.target
        )
        chosen = torch.as_tensor(sorted(train_idx if split == "train" else test_idx))
        pixels = torch.as_tensor(bunch.images, dtype=torch.float32)[chosen] / 16.0
        images = F.interpolate(pixels[:, None], size=(_SIZE, _SIZE), mode="bilinear", align_corners=False)
        images = (images.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1)
        labels = torch.as_tensor(bunch.target, dtype=torch.int64)[chosen]
        return images.contiguous(), labels


@hookimpl
def robench_datasets() -> list[type[Dataset]]:
    return [Digits]
