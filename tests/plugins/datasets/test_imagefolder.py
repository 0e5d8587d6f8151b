"""imagefolder: ROOT/{train,test}/<class>/ trees, clear errors, and the real CIFAR-10 JPEG copy."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import robench
from robench.api import ConfigError
from robench_plugins.datasets.imagefolder import ImageFolder

SHARED = [Path(__file__).resolve().parents[4] / "shared" / "data" / "cifar10-jpeg",
          Path("/work/shared/data/cifar10-jpeg")]


def make_tree(root: Path, classes=("cat", "dog", "emu"), per_class=(3, 2), size=(20, 24)) -> None:
    rng = np.random.default_rng(0)
    for split, count in zip(("train", "test"), per_class):
        for c in classes:
            folder = root / split / c
            folder.mkdir(parents=True)
            for i in range(count):
                pixels = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
            (folder / "notes.txt").write_text("not an image")


def test_reads_classes_from_folder_names(tmp_path: Path) -> None:
    make_tree(tmp_path)
    dataset = ImageFolder()
    images, labels = dataset.load("train", tmp_path)
    assert images.shape == (9, 3, 20, 24) and images.dtype == torch.uint8
    assert labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and dataset.num_classes == 3
    with Image.open(tmp_path / "train" / "dog" / "1.png") as png:
        assert torch.equal(images[4].permute(1, 2, 0), torch.from_numpy(np.array(png)))
    assert ImageFolder().load("test", tmp_path)[0].shape[0] == 6


def test_images_of_other_sizes_are_brought_to_the_common_size(tmp_path: Path) -> None:
    make_tree(tmp_path)
    Image.new("RGB", (40, 10)).save(tmp_path / "train" / "cat" / "odd.jpg")
    images, _ = ImageFolder().load("train", tmp_path)
    assert images.shape == (10, 3, 20, 24)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda root: None, r"for dataset 'imagefolder' \(from --data-root\) does not exist"),
        (lambda root: (root / "train" / "a").mkdir(parents=True), "has no test/ folder; imagefolder expects"),
        (lambda root: [(root / s / c).mkdir(parents=True) for s, c in (("train", "a"), ("train", "b"), ("test", "a"),
                                                                    ("test", "z"))],
         "the train and test classes of .* differ: only in train: b; only in test: z"),
        (lambda root: [(root / s / "a").mkdir(parents=True) for s in ("train", "test")], "holds no images"),
    ],
)
def test_wrong_layouts_are_one_clear_error(tmp_path: Path, setup, message: str) -> None:
    root = tmp_path / "data"
    if setup(root) is None and not root.exists() and "does not exist" not in message:
        root.mkdir()
    with pytest.raises(ConfigError, match=message) as err:
        ImageFolder().load("train", root)
    assert "\n" not in str(err.value)


def test_real_cifar10_jpeg_copy(tmp_path: Path) -> None:
    """A few hundred images of the real CIFAR-10 copy (JPEG q75) through a whole run."""
    source = next((p for p in SHARED if p.is_dir()), None)
    if source is None:
        pytest.skip("the shared CIFAR-10 JPEG copy is not on this machine")
    subset = tmp_path / "cifar10-subset"
    for split, count in (("train", 24), ("test", 8)):
        for folder in sorted((source / split).iterdir()):
            (subset / split / folder.name).mkdir(parents=True)
            for image in sorted(folder.iterdir())[:count]:
                os.symlink(image, subset / split / folder.name / image.name)
    table = robench.run(datasets="imagefolder", data_root=subset, distortions="gaussian_noise,jpeg_compression",
                        methods="none", seeds="0", severities="1,5", pretrain_epochs=2, embed_dim=64, depth=2,
                        num_heads=2, device="cpu", out=tmp_path / "run", quiet=True)
    assert set(table["distortion"]) == {"gaussian_noise", "jpeg_compression"}
    assert (table["n_seeds"] == 1).all() and table["mean"].between(0, 1).all()
    record = next((tmp_path / "run" / "cells").rglob("seed-0.json")).read_text()
    assert '"num_train":240' in record and '"num_test":80' in record
