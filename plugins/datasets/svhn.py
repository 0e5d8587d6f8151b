"""SVHN (Netzer et al., 2011, "Reading Digits in Natural Images with Unsupervised Feature
Learning"): cropped digits, 73,257 train and 26,032 test images, 32x32 RGB, 10 classes, read
through torchvision from ``DATA_ROOT/{train,test}_32x32.mat``."""

from __future__ import annotations

from pathlib import Path

import torch

from robench.api import Dataset, hookimpl
from robench_plugins.datasets._torchvision import as_tensors, check_split, fingerprint, open_split, resolve_root


class Svhn(Dataset):
    """SVHN cropped digits: 73,257 train and 26,032 test images, 32x32 RGB (torchvision's files)."""

    name = "svhn"
    num_classes = 10
    hflip = False  # a mirrored digit is not the same digit

    def fingerprint(self, root: Path | None) -> str | None:
        return fingerprint(root, self.name, ["train_32x32.mat", "test_32x32.mat"])

    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets import SVHN

        check_split(self.name, split)
        base = resolve_root(root, self.name, self.download)
        data = open_split(SVHN, self.name, base, f"{split}_32x32.mat", self.download, split=split)
        return as_tensors(data.data, data.labels, channels_last=False)


@hookimpl
def robench_datasets() -> list[type[Dataset]]:
    return [Svhn]
