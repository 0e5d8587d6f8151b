"""Comparison of two leaderboards (files or run directories), joined on their keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from robench.errors import ConfigError
from robench.leaderboard import KEYS, read_csv

SHOWN = ["mean", "ci95_low", "ci95_high"]


def load_leaderboard(source: Path, flag: str) -> pd.DataFrame:
    """A leaderboard from a CSV file, or every dataset's leaderboard of a run directory."""
    if source.is_dir():
        files = sorted(p for p in (source / "leaderboards").glob("*.csv") if not p.stem.endswith("-summary"))
        if not files:
            raise ConfigError(f"{str(source)!r} (from {flag}) holds no leaderboard CSV under leaderboards/")
        return pd.concat([read_csv(p) for p in files], ignore_index=True)
    if not source.is_file():
        raise ConfigError(f"leaderboard {str(source)!r} (from {flag}) does not exist; give a CSV or a run directory")
    try:
        table = read_csv(source)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise ConfigError(f"cannot read leaderboard {str(source)!r} (from {flag}): {exc}") from None
    missing = [c for c in [*KEYS, *SHOWN] if c not in table.columns]
    if missing:
        raise ConfigError(f"{str(source)!r} (from {flag}) is not a robench leaderboard: no column {missing[0]!r}")
    return table


def compare(a: pd.DataFrame, b: pd.DataFrame, metric: str | None = None) -> pd.DataFrame:
    """Rows present in both, side by side: means and 95% intervals of A and B, ``delta`` (B - A)
    and ``beyond_ci`` where the two intervals do not overlap.

    Raises:
        ConfigError: if the two leaderboards share no (dataset, distortion, severity, method,
            metric) row.
    """
    if metric is not None:
        a, b = a[a["metric"] == metric], b[b["metric"] == metric]
    joined = a[[*KEYS, *SHOWN]].merge(b[[*KEYS, *SHOWN]], on=KEYS, suffixes=("_a", "_b"))
    if joined.empty:
        raise ConfigError(
            "the two leaderboards share no (dataset, distortion, severity, method, metric) row: "
            f"A has {_describe(a)}; B has {_describe(b)}"
        )
    joined["delta"] = joined["mean_b"] - joined["mean_a"]
    joined["beyond_ci"] = (joined["ci95_low_b"] > joined["ci95_high_a"]) | (joined["ci95_high_b"] < joined["ci95_low_a"])
    return joined


def _describe(table: pd.DataFrame) -> str:
    parts = [f"{col} {', '.join(sorted(map(str, table[col].unique()))[:6])}" for col in ("dataset", "method", "metric")]
    return "; ".join(parts) if not table.empty else "no rows"
