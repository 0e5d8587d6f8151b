"""CIFAR-10 and CIFAR-100 (Krizhevsky, 2009, "Learning Multiple Layers of Features from Tiny
Images"), read through torchvision from ``DATA_ROOT/cifar-10-batches-py`` (or
``cifar-100-python``); ``--download`` fetches them."""

from __future__ import annotations

from pathlib import Path

import torch

from robench.api import Dataset, hookimpl
from robench_plugins.datasets._torchvision import as_tensors, check_split, fingerprint, open_split, resolve_root


class _Cifar(Dataset):
    folder: str
    files: list[str]

    def _factory(self):
        raise NotImplementedError

    def fingerprint(self, root: Path | None) -> str | None:
        return fingerprint(root, self.name, [f"{self.folder}/{f}" for f in self.files])

    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        check_split(self.name, split)
        base = resolve_root(root, self.name, self.download)
        data = open_split(self._factory(), self.name, base, f"{self.folder}/", self.download, train=split == "train")
        return as_tensors(data.data, data.targets, channels_last=True)


class Cifar10(_Cifar):
    """CIFAR-10: 50,000 train and 10,000 test images, 32x32 RGB, 10 classes (torchvision's files)."""

    name = "cifar10"
    num_classes = 10
    folder = "cifar-10-batches-py"
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]

    def _factory(self):
        from torchvision.datasets import CIFAR10

        return CIFAR10


class Cifar100(_Cifar):
    """CIFAR-100: 50,000 train and 10,000 test images, 32x32 RGB, 100 fine classes (torchvision's files)."""

    name = "cifar100"
    num_classes = 100
    folder = "cifar-100-python"
    files = ["train", "test", "meta"]

    def _factory(self):
        from torchvision.datasets import CIFAR100

        return CIFAR100


@hookimpl
def robench_datasets() -> list[type[Dataset]]:
    return [Cifar10, Cifar100]
