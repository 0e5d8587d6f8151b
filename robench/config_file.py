"""Run configs as files: ``robench run --config grid.toml`` (TOML or YAML), keys as the flags.

Keys are the flag names with or without dashes (``label-fraction`` or ``label_fraction``); lists
are lists or comma-separated strings. Flags given on the command line override the file. A run
directory keeps its resolved config as ``config.toml``, so ``robench run --config
RUN_DIR/config.toml`` repeats the run (and resumes it).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from robench.config import RunConfig
from robench.errors import ConfigError, unknown_choice

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

# file keys beyond RunConfig's fields: the backbone's size overrides
_EXTRA_KEYS = ("img_size", "patch_size", "embed_dim", "depth", "num_heads")


def read_config_file(path: Path) -> dict[str, Any]:
    """Options from a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file, keys normalised to
    field names.

    Raises:
        ConfigError: for a missing or unreadable file, a syntax error (with its line), a value
            that is not a table at the top level, or an unknown key.
    """
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} (from --config) does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {str(path)!r} (from --config) has suffix {path.suffix!r}; "
                          "valid: .toml, .yaml, .yml")
    data = _parse(path)
    if not isinstance(data, dict):
        raise ConfigError(f"config file {str(path)!r} must hold a table of options, not {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(RunConfig)} | set(_EXTRA_KEYS)
    options = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            raise unknown_choice("config key", key, str(path), sorted(known))
        options[name] = value
    return options


def _parse(path: Path) -> Any:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"cannot parse config file {str(path)!r}: {exc}") from None
    import yaml

    try:
        return yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"cannot parse config file {str(path)!r}{where}: {problem}") from None


def config_to_toml(config: RunConfig) -> str:
    """The resolved config as TOML that :func:`read_config_file` reads back to the same config.

    Unset (None) options and empty lists are left out; the backbone is written as its model name
    and explicit size overrides.
    """
    lines = ["# robench run config (resolved); repeat with: robench run --config <this file>"]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "backbone":
            lines.append(f"backbone = {_toml(value.model)}")
            lines.extend(f"{k} = {_toml(v)}" for k, v in value.overrides().items())
        elif value is not None and value != ():
            lines.append(f"{field.name} = {_toml(value)}")
    return "\n".join(lines) + "\n"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (tuple, list)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))  # a TOML basic string is a JSON string
