"""digits: scikit-learn's bundled digits, upsampled to 32x32 RGB, fixed stratified split."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

from robench_plugins.datasets.digits import Digits


def test_split_sizes_and_disjointness() -> None:
    train_x, train_y = Digits().load("train", None)
    test_x, test_y = Digits().load("test", None)
    assert train_x.shape == (1257, 3, 32, 32) and test_x.shape == (540, 3, 32, 32)
    assert torch.equal(train_x[:, 0], train_x[:, 2])  # grey
    # class proportions kept by the stratified split
    counts = torch.bincount(train_y, minlength=10).float() / len(train_y)
    expected = torch.bincount(torch.as_tensor(load_digits().target), minlength=10).float() / 1797
    assert (counts - expected).abs().max() < 0.01
    flat_train = {tuple(x.flatten().tolist()) for x in train_x[:, 0, ::4, ::4]}
    assert not any(tuple(x.flatten().tolist()) in flat_train for x in test_x[:50, 0, ::4, ::4])


def test_upsampling_keeps_the_digit() -> None:
    images, labels = Digits().load("test", None)
    small = torch.nn.functional.avg_pool2d(images[:, :1].float(), 4)[:, 0] / 255 * 16
    bunch = load_digits()
    # every downsampled test image is close to one original 8x8 image of the same label
    originals = torch.as_tensor(bunch.images, dtype=torch.float32)
    for image, label in zip(small[:20], labels[:20]):
        distance = (originals - image).abs().mean(dim=(1, 2))
        assert int(bunch.target[int(distance.argmin())]) == int(label)
        assert float(distance.min()) < 1.5


def test_digits_are_not_flip_invariant() -> None:
    assert Digits.hflip is False
