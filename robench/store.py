"""The run directory: manifest, one record per finished cell, leaderboards.

Layout::

    RUN_DIR/
      manifest.json                              settings, grid, environment
      cells/<dataset>/<distortion>/<method>/seed-<n>.json
      leaderboards/<dataset>.csv

Every file is written atomically, so a record that exists is complete; a record that cannot be
read back (or was computed under other settings) is treated as missing and recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from robench.atomic import write_text
from robench.errors import ConfigError
from robench.results import CellKey, CellResult

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def settings_hash(settings: dict[str, Any]) -> str:
    """16 hex digits identifying result-affecting settings."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


class RunStore:
    """Read and write one run directory.

    Args:
        root: the run directory (created on :meth:`open`).
        settings: the run's result-affecting settings (not the grid lists); a directory made
            under other settings is refused, so results of two configurations never mix.
    """

    def __init__(self, root: Path, settings: dict[str, Any]) -> None:
        self.root = Path(root)
        self.settings = settings
        self.settings_hash = settings_hash(settings)

    def check_compatible(self) -> None:
        """Raise :class:`ConfigError` if the directory holds a run made under other settings."""
        manifest = self._read_manifest()
        if manifest is None:
            return
        old = manifest.get("settings", {})
        if old == self.settings:
            return
        diffs = [
            f"{k}: {old.get(k)!r} there vs {self.settings.get(k)!r} now"
            for k in sorted(set(old) | set(self.settings)) if old.get(k) != self.settings.get(k)
        ]
        raise ConfigError(
            f"run directory {str(self.root)!r} (from --out) was made with other settings "
            f"({'; '.join(diffs[:3])}); choose another --out or repeat its settings"
        )

    def open(self, grid: dict[str, list[Any]], environment: dict[str, Any]) -> None:
        """Create the directory if needed and record the settings and the grid in the manifest."""
        self.check_compatible()
        manifest = self._read_manifest() or {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "settings": self.settings,
            "settings_hash": self.settings_hash,
            "grid": {},
        }
        for axis, values in grid.items():
            known = manifest["grid"].setdefault(axis, [])
            known.extend(v for v in values if v not in known)
        manifest["environment"] = environment
        write_text(self.root / MANIFEST, json.dumps(manifest, indent=2) + "\n")

    def cell_path(self, key: CellKey) -> Path:
        """Path of a cell's record."""
        return self.root / "cells" / key.relpath()

    def load(self, key: CellKey) -> CellResult | None:
        """The cell's record, or None if missing, unreadable or from other settings."""
        path = self.cell_path(key)
        if not path.is_file():
            return None
        try:
            result = CellResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("ignoring unreadable cell record %s (%s); it will be recomputed", path, exc)
            return None
        if result.key != key or result.settings_hash != self.settings_hash:
            logger.warning("ignoring cell record %s from other settings; it will be recomputed", path)
            return None
        return result

    def save(self, result: CellResult) -> Path:
        """Write a cell's record atomically; returns its path."""
        path = self.cell_path(result.key)
        write_text(path, json.dumps(result.to_dict(), separators=(",", ":")) + "\n")
        return path

    def leaderboard_path(self, dataset: str) -> Path:
        """Where the leaderboard CSV of ``dataset`` goes."""
        return self.root / "leaderboards" / f"{dataset}.csv"

    def summary_path(self, dataset: str) -> Path:
        """Where the summary CSV of ``dataset`` goes."""
        return self.root / "leaderboards" / f"{dataset}-summary.csv"

    def load_all(self) -> list[CellResult]:
        """Every readable cell record of the directory made under its own settings (sorted)."""
        results = []
        for path in sorted((self.root / "cells").glob("*/*/*/seed-*.json")):
            dataset, distortion, method = path.parts[-4:-1]
            seed = path.stem.removeprefix("seed-")
            if not seed.isdigit():
                continue
            result = self.load(CellKey(dataset, distortion, method, int(seed)))
            if result is not None:
                results.append(result)
        return results

    def manifest(self) -> dict[str, Any]:
        """The manifest; :class:`ConfigError` if the directory has none."""
        manifest = self._read_manifest()
        if manifest is None:
            raise ConfigError(f"{str(self.root)!r} is not a robench run directory (no {MANIFEST})")
        return manifest

    @classmethod
    def existing(cls, root: Path) -> RunStore:
        """A store for an existing run directory, with the settings it was made with."""
        probe = cls(root, {})
        manifest = probe.manifest()
        return cls(root, manifest.get("settings", {}))

    def _read_manifest(self) -> dict[str, Any] | None:
        path = self.root / MANIFEST
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"run directory {str(self.root)!r} has an unreadable {MANIFEST}: {exc}") from None
