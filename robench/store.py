"""The run directory: manifest, one record per finished cell, leaderboards.

Layout::

    RUN_DIR/
      manifest.json                              settings, grid, environment
      config.toml                                the resolved run config (robench run --config)
      cells/<dataset>/<distortion>/<method>/seed-<n>.json          a finished cell
      cells/<dataset>/<distortion>/<method>/seed-<n>.failed.json   a failed cell: reason, traceback
      leaderboards/<dataset>.csv, <dataset>-summary.csv
      .locks/                                    one lock file per cell being computed

Every file is written atomically, so a record that exists is complete; a record that cannot be
read back (or was computed under other settings) is treated as missing and recomputed.

Processes share a run directory safely by claiming cells: a process computes a cell only while it
holds an exclusive ``flock`` on the cell's lock file, which the kernel releases when the process
ends, however it ends. (``flock`` needs a local or flock-capable shared filesystem; elsewhere,
run one process per directory.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

try:  # POSIX; without it, cells are not claimed (one process per directory)
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

from robench.atomic import remove_stale_temporaries, write_text
from robench.errors import ConfigError
from robench.results import CellKey, CellResult

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
CONFIG = "config.toml"


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
        changed = sorted(k for k in set(old) | set(self.settings) if old.get(k) != self.settings.get(k))
        changed.sort(key=lambda k: (k not in old or k not in self.settings))  # values on both sides first
        diffs = [f"{k}: {old.get(k)!r} there vs {self.settings.get(k)!r} now" for k in changed]
        raise ConfigError(
            f"run directory {str(self.root)!r} (from --out) was made with other settings "
            f"({'; '.join(diffs[:3])}); choose another --out or repeat its settings"
        )

    def open(self, grid: dict[str, list[Any]], environment: dict[str, Any], config_text: str = "") -> None:
        """Create the directory if needed, record the settings, the grid (merged with earlier
        runs') and the environment in the manifest, write the resolved config, and remove the
        temporary files of writers that were killed."""
        self.check_compatible()
        self.root.mkdir(parents=True, exist_ok=True)
        with self._directory_lock():
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
            if config_text:
                write_text(self.root / CONFIG, config_text)
        removed = remove_stale_temporaries(self.root)
        if removed:
            logger.info("removed %d temporary files left by killed writers", removed)

    @contextlib.contextmanager
    def _directory_lock(self) -> Iterator[None]:
        """Serialise manifest updates between processes (flock on .locks/manifest.lock)."""
        if fcntl is None:  # pragma: no cover - Windows
            yield
            return
        path = self.root / ".locks" / "manifest.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

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

    def failure_path(self, key: CellKey) -> Path:
        """Path of a cell's failure record."""
        return self.cell_path(key).with_suffix(".failed.json")

    def save_failure(self, key: CellKey, error: str, traceback: str) -> Path:
        """Record that a cell failed, with the error line and the traceback (atomically)."""
        record = {"key": dataclasses.asdict(key), "settings_hash": self.settings_hash, "error": error,
                  "traceback": traceback, "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        path = self.failure_path(key)
        write_text(path, json.dumps(record, indent=2) + "\n")
        return path

    def load_failure(self, key: CellKey) -> dict[str, Any] | None:
        """The failure record of a cell, or None."""
        try:
            record = json.loads(self.failure_path(key).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return record if record.get("settings_hash") == self.settings_hash else None

    def clear_failure(self, key: CellKey) -> None:
        """Forget a cell's failure (after it succeeded)."""
        self.failure_path(key).unlink(missing_ok=True)

    @contextlib.contextmanager
    def claim(self, key: CellKey) -> Iterator[bool]:
        """Hold the cell's lock for the block; yields False if another live process holds it."""
        if fcntl is None:  # pragma: no cover - Windows
            yield True
            return
        path = self._lock_path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                yield False
                return
            try:
                handle.seek(0)
                handle.truncate()
                handle.write(f"{os.getpid()}\n")
                handle.flush()
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def is_claimed(self, key: CellKey) -> bool:
        """Whether a live process holds the cell's lock right now."""
        with self.claim(key) as free:
            return not free

    def _lock_path(self, key: CellKey) -> Path:
        digest = hashlib.sha1(str(key.relpath()).encode()).hexdigest()[:16]
        return self.root / ".locks" / f"{digest}.lock"

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
