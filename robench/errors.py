"""The errors robench raises for problems a user can fix.

Every user-facing problem (a bad flag, an unknown plugin name, a broken plugin, a missing file)
raises a subclass of :class:`RobenchError`. The CLI prints it as one line and exits with status 2;
library callers can catch it. Internal invariants use ``assert``.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class RobenchError(Exception):
    """Base class of every error a user can fix; its message is one self-contained line."""


class ConfigError(RobenchError):
    """A configuration value (flag, argument, config key, file) is invalid."""


class PluginError(RobenchError):
    """A plugin is broken, clashes with another plugin, or breaks the plugin contract."""


class SupervisionError(RobenchError):
    """A method asked for data (clean images, labels) that it did not declare it uses."""


def unknown_choice(kind: str, value: object, source: str, choices: Iterable[str]) -> ConfigError:
    """Build the error for an unknown name: what was wrong, where it came from, a suggestion.

    Args:
        kind: what the value names, e.g. ``"distortion"``.
        value: the bad value as the user gave it.
        source: where it came from, e.g. ``"--distortions"``.
        choices: the valid names.
    """
    choices = sorted(set(choices))
    close = difflib.get_close_matches(str(value), choices, n=1, cutoff=0.6)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    listed = ", ".join(choices) if choices else "(none registered)"
    return ConfigError(f"unknown {kind} {value!r} (from {source}).{hint} Choose from: {listed}")
