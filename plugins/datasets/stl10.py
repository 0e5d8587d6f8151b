"""STL-10 (Coates, Ng & Lee, 2011, "An Analysis of Single-Layer Networks in Unsupervised Feature
Learning", AISTATS): the 5,000 labelled train and 8,000 test images, 96x96 RGB, 10 classes, read
through torchvision from ``DATA_ROOT/stl10_binary`` (the 100,000 unlabelled images are not used)."""

from __future__ import annotations

from pathlib import Path

import torch

from robench.api import Dataset, hookimpl
from robench_plugins.datasets._torchvision import as_tensors, check_split, fingerprint, open_split, resolve_root

_FILES = ["train_X.bin", "train_y.bin", "test_X.bin", "test_y.bin"]


class Stl10(Dataset):
    """STL-10: 5,000 labelled train and 8,000 test images, 96x96 RGB, 10 classes (torchvision's files)."""

    name = "stl10"
    num_classes = 10

    def fingerprint(self, root: Path | None) -> str | None:
        return fingerprint(root, self.name, [f"stl10_binary/{f}" for f in _FILES])

    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        from torchvision.datasets import STL10

        check_split(self.name, split)
        base = resolve_root(root, self.name, self.download)
        data = open_split(STL10, self.name, base, "stl10_binary/", self.download, split=split)
        return as_tensors(data.data, data.labels, channels_last=False)


@hookimpl
def robench_datasets() -> list[type[Dataset]]:
    return [Stl10]
