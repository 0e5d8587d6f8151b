"""Figures. ``distortion_grid``: every distortion at every severity on one real image."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from robench.atomic import atomic_path
from robench.data import distortion_seeds, to_float
from robench.errors import ConfigError
from robench.registry import Registry
from robench.rng import BatchRNG

_LABEL_WIDTH = 150
_HEADER = 22


def distortion_grid(
    registry: Registry,
    dataset: str,
    distortions: Sequence[str],
    out: Path,
    *,
    index: int = 0,
    seed: int = 0,
    cell: int = 96,
    severity_table: str = "auto",
    data_root: Path | None = None,
) -> Path:
    """Write a PNG grid: one row per distortion, a clean column, then one column per severity.

    The distortions run at the dataset's own resolution (so each uses the table a run would);
    cells are then enlarged with nearest-neighbour to ``cell`` pixels for viewing.

    Raises:
        ConfigError: for an unknown dataset or distortion, or an image index out of range.
    """
    from PIL import Image, ImageDraw

    info = registry.info("dataset", dataset, "--dataset")
    images, _ = info.cls().load("test", data_root)
    if not 0 <= index < images.shape[0]:
        raise ConfigError(f"image index {index} (from --index) is out of range; the test split of "
                          f"{dataset!r} has {images.shape[0]} images (0-{images.shape[0] - 1})")
    image = to_float(images[index : index + 1])
    rows = [_row(registry, name, image, index, seed, dataset, severity_table) for name in distortions]
    columns = 1 + max(len(r) - 1 for r in rows)
    canvas = Image.new("RGB", (_LABEL_WIDTH + columns * cell, _HEADER + len(rows) * cell), "white")
    draw = ImageDraw.Draw(canvas)
    for c, title in enumerate(["clean", *(f"severity {s}" for s in range(1, columns))]):
        draw.text((_LABEL_WIDTH + c * cell + 4, 4), title, fill="black")
    for r, (name, tiles) in enumerate(zip(distortions, rows)):
        draw.text((4, _HEADER + r * cell + cell // 2 - 6), name, fill="black")
        for c, tile in enumerate(tiles):
            canvas.paste(_to_pil(tile, cell), (_LABEL_WIDTH + c * cell, _HEADER + r * cell))
    with atomic_path(out) as tmp:
        canvas.save(tmp, format="PNG")
    return out


def _row(registry: Registry, name: str, image: torch.Tensor, index: int, seed: int, dataset: str,
         severity_table: str) -> list[torch.Tensor]:
    distortion = registry.get("distortion", name, "--distortions")()
    if severity_table != "auto" and distortion.tables:
        distortion.table_override = severity_table
    tiles = [image[0]]
    for severity in distortion.severities:
        seeds = distortion_seeds(seed, dataset, "test", name, severity, torch.tensor([index]))
        tiles.append(distortion(image, severity, BatchRNG(seeds))[0])
    return tiles


def _to_pil(tile: torch.Tensor, cell: int):
    from PIL import Image

    pixels = (tile.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    return Image.fromarray(pixels).resize((cell, cell), Image.NEAREST)
