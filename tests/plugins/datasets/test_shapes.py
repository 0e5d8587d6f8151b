"""shapes: seeded, class-balanced, any size, train and test disjoint."""

from __future__ import annotations

import torch

from robench_plugins.datasets.shapes import CLASSES, Shapes, ShapesOptions

SMALL = ShapesOptions(train_size=200, test_size=100)


def test_balanced_and_seeded() -> None:
    images, labels = Shapes(SMALL).load("train", None)
    assert images.shape == (200, 3, 32, 32) and images.dtype == torch.uint8
    assert torch.bincount(labels, minlength=len(CLASSES)).tolist() == [20] * len(CLASSES)
    again, _ = Shapes(SMALL).load("train", None)
    assert torch.equal(images, again)
    other, _ = Shapes(ShapesOptions(train_size=200, seed=1)).load("train", None)
    assert not torch.equal(images, other)


def test_train_and_test_differ() -> None:
    train, _ = Shapes(SMALL).load("train", None)
    test, _ = Shapes(SMALL).load("test", None)
    assert not torch.equal(train[:100], test)


def test_any_size() -> None:
    images, labels = Shapes(ShapesOptions(train_size=30, image_size=64)).load("train", None)
    assert images.shape == (30, 3, 64, 64) and labels.shape == (30,)


def test_the_shape_stands_out_from_the_background() -> None:
    images, _ = Shapes(SMALL).load("test", None)
    # every image has a foreground: pixels far (in luminance) from the image's median
    luminance = torch.tensor([0.299, 0.587, 0.114])[None, :, None, None]
    grey = (images.float() * luminance).sum(1).flatten(1) / 255
    far = (grey - grey.median(dim=1, keepdim=True).values).abs() > 0.15
    assert (far.float().mean(1) > 0.03).all()
