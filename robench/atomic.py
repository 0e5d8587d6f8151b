"""Atomic file writes: a reader sees the old file or the complete new one, never a part.

Each write goes to a temporary file in the target directory, is flushed to disk, then renamed over
the target with ``os.replace`` (atomic on POSIX and Windows within one filesystem).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer's pid in the name lets a later run remove what a killed writer left behind
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=_SUFFIX)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def remove_stale_temporaries(root: Path) -> int:
    """Delete temporary files under ``root`` left by writers that no longer run (on this host);
    returns how many. A live writer's file is never touched."""
    removed = 0
    for tmp in Path(root).rglob(f".*{_SUFFIX}"):
        parts = tmp.name.split(".")  # "", <name parts>, <pid>, <random>, "tmp"
        if len(parts) >= 4 and parts[-3].isdigit() and not _alive(int(parts[-3])):
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
