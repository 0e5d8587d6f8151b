"""Every registered plugin passes the same contract (as timm's tests do over list_models)."""

from __future__ import annotations

import pytest
import torch

from robench.api import ConfigError, Dataset, Distortion, Method
from robench.registry import Registry
from robench.rng import BatchRNG, sample_seeds
from robench_plugins.distortions import _device

from conftest import uniform_images

REGISTRY = Registry()


def _rng(batch: int, base: int = 0) -> BatchRNG:
    return BatchRNG(sample_seeds(base, torch.arange(batch)))


@pytest.fixture(params=REGISTRY.names("distortion"))
def distortion(request: pytest.FixtureRequest) -> Distortion:
    return REGISTRY.get("distortion", request.param)()


@pytest.fixture(params=REGISTRY.names("dataset"))
def dataset(request: pytest.FixtureRequest) -> Dataset:
    return REGISTRY.get("dataset", request.param)()


@pytest.mark.parametrize("size", [32, 128])
def test_distortion_keeps_shape_dtype_device_and_range(distortion: Distortion, size: int) -> None:
    images = uniform_images(3, size)
    for severity in distortion.severities:
        out = distortion(images, severity, _rng(3))
        assert out.shape == images.shape and out.dtype == images.dtype and out.device == images.device
        assert out.min() >= 0.0 and out.max() <= 1.0


@pytest.mark.parametrize("shape", [(1, 40), (40, 1), (1, 1), (2, 3)])
def test_distortion_takes_images_a_pixel_or_two_across(distortion: Distortion, shape: tuple[int, int]) -> None:
    """Degenerate sizes: glass_blur's scan with no region to scan (it raised), fog's and frost's
    plasma map of one value (0 / 0: NaN)."""
    images = torch.rand(2, 3, *shape, generator=torch.Generator().manual_seed(0))
    for severity in distortion.severities:
        out = distortion(images, severity, _rng(2))
        assert out.shape == images.shape and not out.isnan().any()
        assert out.min() >= 0.0 and out.max() <= 1.0


def test_distortion_is_deterministic_per_sample(distortion: Distortion) -> None:
    images = uniform_images(5)
    severity = distortion.severities[-1]
    seeds = sample_seeds(3, torch.arange(5))
    whole = distortion(images, severity, BatchRNG(seeds))
    again = distortion(images, severity, BatchRNG(seeds))
    pair = distortion(images[[4, 1]], severity, BatchRNG(seeds[[4, 1]]))
    torch.testing.assert_close(whole, again, rtol=0, atol=0)
    torch.testing.assert_close(pair, whole[[4, 1]], rtol=0, atol=1e-6)


def test_distortion_does_not_change_its_input(distortion: Distortion) -> None:
    images = uniform_images(2)
    copy = images.clone()
    distortion(images, distortion.severities[-1], _rng(2))
    assert torch.equal(images, copy)


@pytest.mark.parametrize("bad", [0, 6, -1])
def test_distortion_rejects_unknown_severities(distortion: Distortion, bad: int) -> None:
    if bad in distortion.severities:
        pytest.skip("offered by this distortion")
    with pytest.raises(ConfigError, match=f"severity {bad}.*valid"):
        distortion(uniform_images(1), bad, _rng(1))


# distortions without randomness (for the rest, other sample seeds must give other pixels)
DETERMINISTIC = {"brightness", "contrast", "defocus_blur", "gaussian_blur", "jpeg_compression",
                 "low_resolution", "pixelate", "saturate", "zoom_blur"}


def test_different_samples_get_different_draws(distortion: Distortion) -> None:
    image = uniform_images(1, seed=3).expand(2, -1, -1, -1) * 0.6 + 0.2
    out = distortion(image, distortion.severities[-1], BatchRNG(sample_seeds(0, torch.tensor([4, 5]))))
    assert torch.equal(out[0], out[1]) == (distortion.name in DETERMINISTIC)


def test_chunked_cpu_batches_equal_single_samples(distortion: Distortion, cpu_chunks: None) -> None:
    images = uniform_images(14, size=224, seed=2)  # at 224 px a CPU chunk holds 6 images
    seeds = sample_seeds(9, torch.arange(14))
    whole = distortion(images, 3, BatchRNG(seeds))
    for i in (0, 7, 13):
        alone = distortion(images[i : i + 1], 3, BatchRNG(seeds[i : i + 1]))
        torch.testing.assert_close(alone, whole[i : i + 1], rtol=0, atol=1e-5)


# distortions that distort a batch of mixed severities in one pass
MIXING = {"brightness", "contrast", "defocus_blur", "elastic_transform", "fog", "frost", "gaussian_blur",
          "gaussian_noise", "glass_blur", "impulse_noise", "jpeg_compression", "motion_blur", "occlusion",
          "pixelate", "salt_and_pepper", "saturate", "shot_noise", "snow", "spatter", "speckle_noise",
          "zoom_blur"}
# ... of which these filter a mixed batch with the largest kernel present (zero-bordered), whose
# convolution or FFT rounds differently from a smaller kernel's
MIXED_ROUNDING = {"defocus_blur"}


@pytest.mark.parametrize("size", [32, 224])
def test_mixed_severities_equal_each_severity_alone(distortion: Distortion, size: int, cpu_chunks: None) -> None:
    count = 14 if size == 224 else 10  # at 224 px the CPU chunks hold 6 images: chunks see mixes
    images = uniform_images(count, size=size, seed=4)
    seeds = sample_seeds(5, torch.arange(count))
    severities = torch.tensor(distortion.severities)[torch.arange(count) % len(distortion.severities)]
    severities = severities[torch.randperm(count, generator=torch.Generator().manual_seed(size))]
    assert distortion.mixes_severities == (distortion.name in MIXING)
    mixed = distortion.call_mixed(images, severities, BatchRNG(seeds))
    for severity in distortion.severities:
        rows = severities == severity
        alone = distortion(images, severity, BatchRNG(seeds))[rows]
        # a grouped call sees fewer images
        tolerance = 1e-5 if not distortion.mixes_severities or distortion.name in MIXED_ROUNDING else 0.0
        torch.testing.assert_close(mixed[rows], alone, rtol=0, atol=tolerance)


@pytest.mark.parametrize("size", [32, 224])
def test_one_pass_mixes_equal_each_severity_alone_where_launches_dominate(
        distortion: Distortion, size: int, monkeypatch: pytest.MonkeyPatch, cpu_chunks: None) -> None:
    # A few distortions take their one-pass mix only on GPUs (a CPU groups by severity instead):
    # that path, run here on the CPU as a GPU would choose it.
    monkeypatch.setattr(_device, "launch_bound", lambda device: True)
    test_mixed_severities_equal_each_severity_alone(distortion, size, cpu_chunks)


def test_mixed_severities_are_checked(distortion: Distortion) -> None:
    images = uniform_images(2)
    with pytest.raises(ConfigError, match="severity 9.*valid"):
        distortion.call_mixed(images, torch.tensor([1, 9]), _rng(2))
    with pytest.raises(ValueError, match=r"severities of shape \(3,\) for a batch of 2"):
        distortion.call_mixed(images, torch.tensor([1, 1, 2]), _rng(2))


# datasets read from files: their loading is tested on files the tests write (tests/plugins/datasets)
FILE_BACKED = {"cifar10", "cifar100", "stl10", "svhn", "imagefolder"}


def test_dataset_splits_follow_the_contract(dataset: Dataset) -> None:
    if dataset.name in FILE_BACKED:
        pytest.skip("reads files; tested on files written by tests/plugins/datasets")
    for split in ("train", "test"):
        images, labels = dataset.load(split, None)
        assert images.dtype == torch.uint8 and images.dim() == 4 and images.shape[1] == 3
        assert labels.dtype == torch.int64 and labels.shape == (images.shape[0],)
        assert labels.min() >= 0 and labels.max() < dataset.num_classes
        assert set(labels.unique().tolist()) == set(range(dataset.num_classes))
        again = dataset.load(split, None)
        assert torch.equal(images, again[0]) and torch.equal(labels, again[1])


def test_dataset_rejects_unknown_split(dataset: Dataset) -> None:
    with pytest.raises(ConfigError, match="split 'validation'"):
        dataset.load("validation", None)


@pytest.mark.parametrize("name", REGISTRY.names("method"))
def test_method_declares_supervision(name: str) -> None:
    cls = REGISTRY.get("method", name)
    assert issubclass(cls, Method)
    assert isinstance(cls.uses_labels, bool) and isinstance(cls.uses_clean_images, bool)
    assert cls.description(), f"method {name} has no docstring"


@pytest.mark.parametrize("kind", ["dataset", "distortion", "method"])
def test_every_plugin_has_a_description(kind: str) -> None:
    for info in REGISTRY.entries(kind):
        assert info.description, f"{kind} {info.name} has no docstring"
        assert info.origin == "built-in" or info.origin.startswith(("package", "--plugin"))


def test_per_sample_values_and_the_severity_index() -> None:
    severities = torch.tensor([3, 1, 5])
    like = torch.zeros(1, dtype=torch.float64)
    assert Distortion.per_sample([0.1, 0.2, 0.3, 0.4, 0.5], severities, like).flatten().tolist() == [0.3, 0.1, 0.5]
    ints = Distortion.per_sample([10, 20, 30, 40, 50], severities, like)
    assert ints.dtype == torch.int64 and ints.shape == (3, 1, 1, 1) and ints.flatten().tolist() == [30, 10, 50]
    assert Distortion.severity_index(severities, torch.device("cpu")).tolist() == [2, 0, 4]


def test_the_severity_index_on_a_device_is_copied_once_per_tensor_unless_it_changes() -> None:
    # "meta" stands in for a GPU here: any non-CPU device takes the cached copy.
    meta = torch.device("meta")
    severities = torch.tensor([3, 1, 5])
    first = Distortion.severity_index(severities, meta)
    assert Distortion.severity_index(severities, meta) is first
    assert Distortion.severity_index(torch.tensor([3, 1, 5]), meta) is not first  # another tensor
    severities[0] = 2  # changed in place: a fresh copy
    assert Distortion.severity_index(severities, meta) is not first
    with torch.inference_mode():  # no version counter: never cached
        frozen = torch.tensor([1, 2])
        assert Distortion.severity_index(frozen, meta) is not Distortion.severity_index(frozen, meta)
