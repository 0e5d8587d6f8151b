"""Result types: the key of a grid cell and the record a finished cell leaves on disk."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULT_SCHEMA = 1


@dataclass(frozen=True, order=True)
class CellKey:
    """One cell of the grid: a method adapted to a distortion on a dataset with a seed."""

    dataset: str
    distortion: str
    method: str
    seed: int

    def relpath(self) -> Path:
        """Where the cell's record lives inside ``cells/`` of a run directory."""
        return Path(self.dataset, self.distortion, self.method, f"seed-{self.seed}.json")

    def __str__(self) -> str:
        return f"{self.dataset}/{self.distortion}/{self.method}/seed={self.seed}"


@dataclass(frozen=True)
class PluginRecord:
    """Which plugin produced part of a result, and from where."""

    name: str
    origin: str
    version: str | None
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellResult:
    """Everything one finished cell produced.

    Attributes:
        key: the cell.
        settings_hash: hash of the run settings the cell was computed under.
        backbone: backbone label, e.g. ``vit_tiny_patch16_224@img32-p4-w96-d4-h3``.
        weights: identifier of the starting weights.
        label_fraction: fraction of the train split that was labelled.
        uses_labels: whether the method used labels.
        uses_clean_images: whether the method used clean images.
        severities: evaluated severities.
        accuracy: metric -> condition (``clean``, ``"1"``..) -> test accuracy.
        predictions: metric -> condition -> predicted class per test sample.
        test_labels: true class per test sample.
        history: what the method logged while training.
        method, distortion, dataset: plugin records (origin, version, options, table used).
        timing: seconds spent fitting and evaluating.
        environment: versions, device, git sha.
    """

    key: CellKey
    settings_hash: str
    backbone: str
    weights: str
    label_fraction: float
    uses_labels: bool
    uses_clean_images: bool
    severities: tuple[int, ...]
    accuracy: dict[str, dict[str, float]]
    predictions: dict[str, dict[str, list[int]]]
    test_labels: list[int]
    history: list[dict[str, Any]]
    method: PluginRecord
    distortion: PluginRecord
    dataset: PluginRecord
    timing: dict[str, float]
    environment: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with a schema number."""
        return {"schema": RESULT_SCHEMA, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CellResult:
        """Rebuild from :meth:`to_dict` output; raises ValueError/KeyError/TypeError if malformed."""
        if data.get("schema") != RESULT_SCHEMA:
            raise ValueError(f"result schema {data.get('schema')!r}, expected {RESULT_SCHEMA}")
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["key"] = CellKey(**values["key"])
        for name in ("method", "distortion", "dataset"):
            values[name] = PluginRecord(**values[name])
        values["severities"] = tuple(values["severities"])
        return cls(**values)
