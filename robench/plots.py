"""Figures: the distortion grid (every distortion at every severity on one real image) and the
leaderboard figures (accuracy against severity, a heat map, a critical-difference diagram)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
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


# -- leaderboard figures ---------------------------------------------------------------------------


def leaderboard_figures(table, summary, out_dir: Path, metric: str = "linear") -> list[Path]:
    """Write, per dataset: accuracy against severity (a panel per distortion, a line per method
    with its 95% band), a method x distortion heat map, and a critical-difference diagram.

    Returns the PNG paths. matplotlib runs headless (Agg).
    """
    import matplotlib

    matplotlib.use("Agg")
    paths = []
    for dataset, part in table[table["metric"] == metric].groupby("dataset", sort=False):
        stem = Path(out_dir) / f"{dataset}-{metric}"
        paths.append(_save(_severity_figure(dataset, part), stem.with_name(stem.name + "-severity.png")))
        paths.append(_save(_heatmap_figure(dataset, part), stem.with_name(stem.name + "-heatmap.png")))
        ranks = summary[(summary["dataset"] == dataset) & (summary["metric"] == metric)]
        paths.append(_save(_cd_figure(dataset, ranks), stem.with_name(stem.name + "-cd.png")))
    return paths


def _save(figure, path: Path) -> Path:
    import matplotlib.pyplot as plt

    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return path


def _severity_figure(dataset: str, part):
    import matplotlib.pyplot as plt

    distortions = list(dict.fromkeys(part["distortion"]))
    columns = min(4, len(distortions))
    rows = -(-len(distortions) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.9 * rows), squeeze=False)
    for ax, distortion in zip(axes.flat, distortions):
        block = part[(part["distortion"] == distortion) & (part["severity"] != "mean")].copy()
        block["x"] = block["severity"].map(lambda s: 0 if s == "clean" else int(s))
        for method, line in block.groupby("method", sort=False):
            line = line.sort_values("x")
            ax.plot(line["x"], 100 * line["mean"], marker="o", ms=3, label=method)
            ax.fill_between(line["x"], 100 * line["ci95_low"], 100 * line["ci95_high"], alpha=0.2)
        ax.set_title(distortion, fontsize=9)
        ax.set_xticks(sorted(block["x"].unique()))
        ax.set_xticklabels(["clean" if x == 0 else str(x) for x in sorted(block["x"].unique())], fontsize=7)
        ax.tick_params(axis="y", labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(distortions):]:
        ax.axis("off")
    axes.flat[0].set_ylabel("accuracy %")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=min(6, len(labels)), fontsize=8, frameon=False)
    figure.suptitle(f"{dataset}: accuracy by severity (95% bootstrap bands)", fontsize=10)
    figure.tight_layout(rect=(0, 0.06, 1, 0.95))
    return figure


def _heatmap_figure(dataset: str, part):
    import matplotlib.pyplot as plt

    grid = part[part["severity"] == "mean"].pivot_table(index="method", columns="distortion", values="mean", sort=False)
    figure, ax = plt.subplots(figsize=(1.0 + 0.9 * grid.shape[1], 1.0 + 0.45 * grid.shape[0]))
    image = ax.imshow(100 * grid.to_numpy(), cmap="viridis", aspect="auto")
    ax.set_xticks(range(grid.shape[1]), grid.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(grid.shape[0]), grid.index, fontsize=8)
    for (i, j), value in np.ndenumerate(100 * grid.to_numpy()):
        ax.text(j, i, f"{value:.1f}", ha="center", va="center", fontsize=7, color="white" if value < grid.to_numpy().mean() * 100 else "black")
    figure.colorbar(image, ax=ax, label="accuracy % (mean over severities)")
    ax.set_title(f"{dataset}: method x distortion", fontsize=10)
    return figure


def _cd_figure(dataset: str, summary):
    """Demsar's critical-difference diagram: average ranks on an axis (best on the right), methods
    whose ranks differ by less than the Nemenyi CD joined by a bar."""
    import matplotlib.pyplot as plt

    ranked = summary.dropna(subset=["average_rank"]).sort_values("average_rank")
    k = max(2, len(summary))
    figure, ax = plt.subplots(figsize=(7, 1.6 + 0.3 * len(ranked)))
    ax.set_xlim(k + 0.3, 0.7)  # rank 1 (best) on the right
    ax.set_ylim(-len(ranked) - 1.5, 1.5)
    ax.axis("off")
    ax.plot([1, k], [0, 0], color="black", lw=1)
    for r in range(1, k + 1):
        ax.plot([r, r], [0, 0.15], color="black", lw=1)
        ax.text(r, 0.3, str(r), ha="center", fontsize=8)
    cd = float(summary["critical_difference"].iloc[0]) if len(summary) else float("nan")
    if np.isfinite(cd):
        ax.plot([1, 1 + cd], [1.0, 1.0], color="black", lw=2)
        ax.text(1 + cd / 2, 1.15, f"CD = {cd:.2f}", ha="center", fontsize=8)
    names, values = list(ranked["method"]), list(ranked["average_rank"])
    for i, (name, value) in enumerate(zip(names, values)):
        y = -1 - i
        ax.plot([value, value], [0, y], color="grey", lw=0.8)
        ax.text(value, y - 0.1, f"{name} ({value:.2f})", ha="center", va="top", fontsize=8)
    for depth, (start, stop) in enumerate(_cliques(values, cd)):
        ax.plot([values[start] , values[stop]], [-0.4 - 0.25 * depth] * 2, color="tab:red", lw=3, alpha=0.7)
    ax.set_title(f"{dataset}: average rank over distortions (Nemenyi, alpha 0.05)", fontsize=10)
    return figure


def _cliques(ranks: list[float], cd: float) -> list[tuple[int, int]]:
    """Maximal runs of sorted ranks spanning at most ``cd`` (groups not significantly different)."""
    if not np.isfinite(cd):
        return []
    groups = []
    for start in range(len(ranks)):
        stop = start
        while stop + 1 < len(ranks) and ranks[stop + 1] - ranks[start] <= cd:
            stop += 1
        if stop > start and not any(a <= start and stop <= b for a, b in groups):
            groups.append((start, stop))
    return groups
