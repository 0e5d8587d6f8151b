"""Any image classification tree ``ROOT/{train,test}/<class>/<image>`` (e.g. ImageNet-100, or the
CIFAR-10 JPEG copy), decoded with Pillow, as torchvision's ``ImageFolder`` lays it out.

Classes are the sorted folder names, which must be the same in train and test. Images are
decoded to RGB at their own size; the harness resizes them to the backbone's input size and
caches the result, so only the first run decodes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from robench.api import ConfigError, Dataset, default_data_root, files_fingerprint, hookimpl

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


class ImageFolder(Dataset):
    """Images in ROOT/{train,test}/<class>/ folders (--data-root ROOT); classes from folder names."""

    name = "imagefolder"

    def __init__(self) -> None:
        self.num_classes = 0  # known once the folders have been read

    def fingerprint(self, root: Path | None) -> str | None:
        base = self._root(root)
        return files_fingerprint([p for split in ("train", "test") for _, files in self._listing(base, split)
                                  for p in files])

    def load(self, split: str, root: Path | None) -> tuple[torch.Tensor, torch.Tensor]:
        if split not in ("train", "test"):
            raise ConfigError(f"unknown split {split!r} of dataset 'imagefolder'; valid: train, test")
        base = self._root(root)
        listing = self._listing(base, split)
        paths = [p for _, files in listing for p in files]
        labels = [i for i, (_, files) in enumerate(listing) for _ in files]
        if not paths:
            raise ConfigError(f"{str(base / split)!r} (from --data-root) holds no images ({', '.join(EXTENSIONS)})")
        images = _decode_all(paths)
        return images, torch.as_tensor(labels, dtype=torch.int64)

    def _root(self, root: Path | None) -> Path:
        base = Path(root).expanduser() if root is not None else default_data_root() / "imagefolder"
        if not base.is_dir():
            raise ConfigError(f"data root {str(base)!r} for dataset 'imagefolder' (from --data-root) does not exist")
        missing = [s for s in ("train", "test") if not (base / s).is_dir()]
        if missing:
            raise ConfigError(f"data root {str(base)!r} (from --data-root) has no {missing[0]}/ folder; "
                              "imagefolder expects ROOT/train/<class>/... and ROOT/test/<class>/...")
        train, test = _classes(base / "train"), _classes(base / "test")
        if train != test:
            only_train, only_test = sorted(set(train) - set(test)), sorted(set(test) - set(train))
            raise ConfigError(f"the train and test classes of {str(base)!r} differ: only in train: "
                              f"{', '.join(only_train) or '-'}; only in test: {', '.join(only_test) or '-'}")
        if not train:
            raise ConfigError(f"{str(base / 'train')!r} (from --data-root) has no class folders")
        self.num_classes = len(train)
        return base

    def _listing(self, base: Path, split: str) -> list[tuple[str, list[Path]]]:
        folders = _classes(base / split)
        return [(c, sorted(p for p in (base / split / c).iterdir() if p.suffix.lower() in EXTENSIONS))
                for c in folders]


def _classes(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _decode_all(paths: list[Path]) -> torch.Tensor:
    """Decode images to uint8 RGB (threads: Pillow's decoders release the GIL); all must share a
    size, which the harness then resizes to the backbone's."""
    with ThreadPoolExecutor(max_workers=4) as pool:
        arrays = list(pool.map(_decode, paths))
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        arrays = _common_size(arrays)
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()


def _decode(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise ConfigError(f"cannot read image {str(path)!r}: {exc}") from None


def _common_size(arrays: list[np.ndarray]) -> list[np.ndarray]:
    """Images of different sizes are resized to the most common size first (Pillow, bicubic)."""
    from collections import Counter

    from PIL import Image

    (height, width, _), _ = Counter(a.shape for a in arrays).most_common(1)[0]
    return [a if a.shape[:2] == (height, width) else
            np.asarray(Image.fromarray(a).resize((width, height), Image.BICUBIC)) for a in arrays]


@hookimpl
def robench_datasets() -> list[type[Dataset]]:
    return [ImageFolder]
