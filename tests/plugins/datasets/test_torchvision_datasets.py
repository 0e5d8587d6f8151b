"""cifar10, cifar100, stl10, svhn: read through torchvision from files written here in the exact
on-disk formats torchvision reads (torchvision's md5 checks, which only real downloads pass, are
bypassed for these synthetic files)."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

from robench.api import ConfigError
from robench.dataset_cache import load_splits
from robench_plugins.datasets.cifar import Cifar10, Cifar100
from robench_plugins.datasets.stl10 import Stl10
from robench_plugins.datasets.svhn import Svhn

RNG = np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _accept_synthetic_files(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets as tv
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)
    for cls in (tv.CIFAR10, tv.STL10, tv.SVHN):
        monkeypatch.setattr(cls, "_check_integrity", lambda self: True)


def write_cifar(root: Path, folder: str, files: dict[str, int], label_key: str, meta: str, classes: int) -> dict:
    base = root / folder
    base.mkdir(parents=True)
    written = {}
    for name, count in files.items():
        data = RNG.integers(0, 256, (count, 3072), dtype=np.uint8)
        labels = RNG.integers(0, classes, count).tolist()
        with open(base / name, "wb") as fh:
            pickle.dump({"data": data, label_key: labels}, fh)
        written[name] = (data, labels)
    with open(base / meta, "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(classes)],
                     "fine_label_names": [f"c{i}" for i in range(classes)]}, fh)
    return written


def test_cifar10_reads_the_pickled_batches(tmp_path: Path) -> None:
    files = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 3}
    written = write_cifar(tmp_path, "cifar-10-batches-py", files, "labels", "batches.meta", 10)
    images, labels = Cifar10().load("train", tmp_path)
    assert images.shape == (20, 3, 32, 32) and images.dtype == torch.uint8 and labels.dtype == torch.int64
    data, expected = written["data_batch_1"]
    assert torch.equal(images[:4], torch.from_numpy(data.reshape(4, 3, 32, 32)))
    assert labels[:4].tolist() == expected
    test_images, _ = Cifar10().load("test", tmp_path)
    assert torch.equal(test_images, torch.from_numpy(written["test_batch"][0].reshape(3, 3, 32, 32)))


def test_cifar100_uses_the_fine_labels(tmp_path: Path) -> None:
    written = write_cifar(tmp_path, "cifar-100-python", {"train": 6, "test": 2}, "fine_labels", "meta", 100)
    images, labels = Cifar100().load("train", tmp_path)
    assert images.shape == (6, 3, 32, 32) and labels.tolist() == written["train"][1]
    assert Cifar100.num_classes == 100


def test_stl10_reads_the_binary_files(tmp_path: Path) -> None:
    base = tmp_path / "stl10_binary"
    base.mkdir()
    images = {s: RNG.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8) for s, n in (("train", 5), ("test", 3))}
    for split, array in images.items():
        array.transpose(0, 1, 3, 2).tofile(base / f"{split}_X.bin")  # STL-10 stores images column-major
        (np.arange(len(array)) % 10 + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")  # labels 1..10
    loaded, labels = Stl10().load("train", tmp_path)
    assert torch.equal(loaded, torch.from_numpy(images["train"]))
    assert labels.tolist() == [0, 1, 2, 3, 4]


def test_svhn_reads_the_mat_files_and_maps_10_to_0(tmp_path: Path) -> None:
    x = RNG.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)
    y = np.array([[10], [1], [2], [9]], dtype=np.uint8)
    scipy.io.savemat(tmp_path / "train_32x32.mat", {"X": x, "y": y})
    images, labels = Svhn().load("train", tmp_path)
    assert torch.equal(images, torch.from_numpy(x.transpose(3, 2, 0, 1).copy()))
    assert labels.tolist() == [0, 1, 2, 9] and Svhn.hflip is False


@pytest.mark.parametrize("dataset", [Cifar10(), Cifar100(), Stl10(), Svhn()], ids=lambda d: d.name)
def test_missing_or_wrong_data_root_is_one_clear_error(dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=f"data root '{tmp_path}/nowhere' for dataset '{dataset.name}' "
                                         r"\(from --data-root\) does not exist; .* or add --download"):
        dataset.load("train", tmp_path / "nowhere")
    with pytest.raises(ConfigError, match=f"dataset '{dataset.name}': '{tmp_path}' \\(from --data-root\\) does not "
                                         "hold .*; give the folder that holds it, or add --download"):
        dataset.load("train", tmp_path)


def test_splits_are_cached_by_source_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    base = tmp_path / "stl10_binary"
    base.mkdir()
    for split, n in (("train", 4), ("test", 2)):
        RNG.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8).tofile(base / f"{split}_X.bin")
        (np.arange(n) % 10 + 1).astype(np.uint8).tofile(base / f"{split}_y.bin")
    cache = tmp_path / "cache"
    first = load_splits(Stl10(), "stl10", "1", tmp_path, (32, 32), cache)
    assert first["train"][0].shape == (4, 3, 32, 32)  # resized to the backbone's input size
    assert len(list((cache / "datasets").glob("stl10-*.safetensors"))) == 1

    def no_reading(self, split, root):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(Stl10, "load", no_reading)
    again = load_splits(Stl10(), "stl10", "1", tmp_path, (32, 32), cache)
    assert torch.equal(again["train"][0], first["train"][0]) and torch.equal(again["test"][1], first["test"][1])
    with pytest.raises(AssertionError):  # another size is another cache entry
        load_splits(Stl10(), "stl10", "1", tmp_path, (48, 48), cache)
    stat = (base / "train_X.bin").stat()
    os.utime(base / "train_X.bin", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    with pytest.raises(AssertionError):  # a changed source is read again
        load_splits(Stl10(), "stl10", "1", tmp_path, (32, 32), cache)
