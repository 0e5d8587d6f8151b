"""Method specs: a method with a preset and option overrides, written in one ``--methods`` item.

Grammar: ``NAME[:PRESET][:KEY=VALUE]...``, e.g. ``asym_kd``, ``asym_kd:global``,
``finetune:lr=3e-4``, ``asym_kd:attn:attn_rows=all``. A preset is a named set of options the
method declares (``Method.presets``); ``KEY`` is a field of the method's options dataclass
(``Method.Options``), and tuple-valued fields take ``+``-separated values (``terms=global+patch``).
The spec text is the method's name in the leaderboard, so each variant is its own row.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any

from robench.api import Method
from robench.errors import ConfigError, unknown_choice
from robench.registry import Registry

_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


@dataclass(frozen=True)
class MethodSpec:
    """A parsed method spec: the text as given, the plugin name, the preset, the overrides."""

    text: str
    name: str
    preset: str | None
    overrides: tuple[tuple[str, str], ...]


def parse_method_spec(text: str, source: str = "--methods") -> MethodSpec:
    """Split ``NAME[:PRESET][:KEY=VALUE]...``; raises :class:`ConfigError` if malformed."""
    name, *parts = [part.strip() for part in text.strip().split(":")]
    preset, overrides = None, []
    for i, part in enumerate(parts):
        if "=" in part:
            key, _, value = part.partition("=")
            if not key.strip() or not value.strip():
                raise ConfigError(f"method spec {text!r} (from {source}) has an empty key or value in {part!r}")
            overrides.append((key.strip(), value.strip()))
        elif i == 0 and part:
            preset = part
        else:
            raise ConfigError(
                f"method spec {text!r} (from {source}): {part!r} is not KEY=VALUE; the form is "
                "NAME[:PRESET][:KEY=VALUE]..."
            )
    return MethodSpec(text.strip(), name, preset, tuple(overrides))


def build_method(registry: Registry, spec: MethodSpec, source: str = "--methods") -> Method:
    """Instantiate the method of ``spec`` with its preset and overrides applied and checked."""
    cls = registry.get("method", spec.name, source)
    options_cls = getattr(cls, "Options", None)
    if options_cls is None:
        if spec.preset or spec.overrides:
            raise ConfigError(f"method {spec.name!r} (from {source}) takes no preset or options; got {spec.text!r}")
        return cls()
    values: dict[str, Any] = {}
    if spec.preset is not None:
        presets = getattr(cls, "presets", {})
        if spec.preset not in presets:
            raise unknown_choice(f"preset of method {spec.name!r}", spec.preset, source, presets)
        values.update(presets[spec.preset])
    hints = typing.get_type_hints(options_cls)
    fields = {f.name for f in dataclasses.fields(options_cls)}
    for key, raw in spec.overrides:
        if key not in fields:
            raise unknown_choice(f"option of method {spec.name!r}", key, source, fields)
        values[key] = _parse_value(raw, hints[key], f"{spec.name}:{key}", source)
    try:
        return cls(options_cls(**values))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"method spec {spec.text!r} (from {source}): {exc}") from None


def _parse_value(raw: str, kind: Any, where: str, source: str) -> Any:
    """Parse ``raw`` as ``kind`` (bool, int, float, str, ``X | None``, ``tuple[X, ...]``)."""
    args = typing.get_args(kind)
    if typing.get_origin(kind) in (typing.Union, types.UnionType) and type(None) in args:
        if raw.lower() == "none":
            return None
        (kind,) = [a for a in args if a is not type(None)]
        args = typing.get_args(kind)
    if typing.get_origin(kind) is tuple:
        return tuple(_parse_value(part, args[0], where, source) for part in raw.split("+"))
    try:
        if kind is bool:
            if raw.lower() not in _TRUE + _FALSE:
                raise ValueError
            return raw.lower() in _TRUE
        return kind(raw)
    except ValueError:
        raise ConfigError(f"option {where}={raw!r} (from {source}) is not a valid {kind.__name__}") from None
