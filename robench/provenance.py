"""Provenance: the versions, machine and source revision behind a result."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
import sys
from pathlib import Path

import torch


def package_version(name: str) -> str | None:
    """Installed version of a distribution, or None."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_sha() -> str | None:
    """The git commit of the robench source tree, with ``-dirty`` if modified; None outside git."""
    root = Path(__file__).resolve().parent.parent
    if not (root / ".git").exists():
        return None
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha + ("-dirty" if dirty else "")


def device_name(device: torch.device) -> str:
    """A human-readable name of the device (GPU model, or CPU architecture and thread count)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu {platform.machine()} ({torch.get_num_threads()} threads)"


def environment(device: torch.device) -> dict[str, str | None]:
    """Versions of robench and its numeric stack, the device, the platform and the git sha."""
    from robench import __version__

    return {
        "robench": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "timm": package_version("timm"),
        "numpy": package_version("numpy"),
        "platform": platform.platform(),
        "device": device_name(device),
        "git_sha": git_sha(),
    }
