"""Shared reading of torchvision's dataset classes into robench's uint8 tensors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from robench.api import ConfigError, default_data_root, files_fingerprint


def check_split(name: str, split: str) -> None:
    """Raise :class:`ConfigError` unless ``split`` is train or test."""
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r} of dataset {name!r}; valid: train, test")


def resolve_root(root: Path | None, name: str, download: bool) -> Path:
    """The data root, checked: it must exist unless the files may be downloaded into it."""
    root = Path(root).expanduser() if root is not None else default_data_root()
    if not root.exists() and not download:
        raise ConfigError(f"data root {str(root)!r} for dataset {name!r} (from --data-root) does not exist; "
                          "give the folder that holds the dataset's files, or add --download")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"data root {str(root)!r} for dataset {name!r} (from --data-root) is not a directory")
    return root


def open_split(factory, name: str, root: Path, expected: str, download: bool, **kwargs):
    """A torchvision dataset object, with its "not found or corrupted" error turned into one line."""
    if download:
        root.mkdir(parents=True, exist_ok=True)
    try:
        return factory(root=str(root), download=download, **kwargs)
    except (RuntimeError, OSError) as exc:  # torchvision: "Dataset not found or corrupted"
        raise ConfigError(f"dataset {name!r}: {str(root)!r} (from --data-root) does not hold {expected} "
                          f"({str(exc).splitlines()[0]}); give the folder that holds it, or add --download") from None


def fingerprint(root: Path | None, name: str, relative: list[str]) -> str | None:
    """Fingerprint of the dataset files under ``root`` (None while any is missing)."""
    base = Path(root).expanduser() if root is not None else default_data_root()
    paths = [base / r for r in relative]
    return files_fingerprint(paths) if all(p.is_file() for p in paths) else None


def as_tensors(images: np.ndarray, labels, channels_last: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``(N, 3, H, W)`` and int64 labels from torchvision's arrays."""
    array = np.ascontiguousarray(images.transpose(0, 3, 1, 2) if channels_last else images)
    return torch.from_numpy(array).to(torch.uint8), torch.as_tensor(np.asarray(labels), dtype=torch.int64)
