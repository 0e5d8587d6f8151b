"""Leaderboards: accuracy over seeds per (dataset, distortion, severity, method, metric).

One long-format table per dataset, a row per (distortion, severity, method, metric) with the mean
and standard deviation over seeds. Severity is ``clean``, ``1``..``5``, or ``mean`` (the mean over
the evaluated severities, taken per seed before averaging over seeds).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from robench.atomic import atomic_path
from robench.results import CellResult

COLUMNS = [
    "dataset", "backbone", "weights", "distortion", "group", "severity", "method",
    "uses_labels", "uses_clean_images", "label_fraction", "metric", "n_seeds", "mean", "std",
]
_KEYS = COLUMNS[: COLUMNS.index("n_seeds")]
MEAN = "mean"
CLEAN = "clean"


def per_seed_frame(results: Sequence[CellResult]) -> pd.DataFrame:
    """One row per (cell, metric, condition), plus the per-seed mean over severities."""
    rows = []
    for r in results:
        base = {
            "dataset": r.key.dataset, "backbone": r.backbone, "weights": r.weights,
            "distortion": r.key.distortion, "group": r.distortion.details.get("group", ""),
            "method": r.key.method, "uses_labels": r.uses_labels,
            "uses_clean_images": r.uses_clean_images, "label_fraction": r.label_fraction,
            "seed": r.key.seed,
        }
        for metric, by_condition in r.accuracy.items():
            severities = [by_condition[str(s)] for s in r.severities]
            for condition, value in by_condition.items():
                rows.append({**base, "metric": metric, "severity": condition, "accuracy": value})
            rows.append({**base, "metric": metric, "severity": MEAN,
                         "accuracy": sum(severities) / len(severities)})
    return pd.DataFrame(rows)


def leaderboard_frame(results: Sequence[CellResult], methods: Sequence[str] = ()) -> pd.DataFrame:
    """The long-format leaderboard (columns :data:`COLUMNS`), sorted by distortion, method (in
    the given order, then by name), metric and severity."""
    per_seed = per_seed_frame(results)
    if per_seed.empty:
        return pd.DataFrame(columns=COLUMNS)
    grouped = per_seed.groupby(_KEYS, sort=False)["accuracy"]
    table = grouped.agg(n_seeds="count", mean="mean", std="std").reset_index()
    method_order = list(dict.fromkeys([*methods, *sorted(table["method"].unique())]))
    table["_m"] = table["method"].map(method_order.index)
    table["_s"] = table["severity"].map(_severity_rank)
    table = table.sort_values(["dataset", "distortion", "_m", "metric", "_s"], kind="stable")
    return table.drop(columns=["_m", "_s"]).reset_index(drop=True)[COLUMNS]


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a leaderboard CSV atomically (six decimals, so identical runs give identical bytes)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")


def format_summary(table: pd.DataFrame, metric: str = "linear") -> str:
    """A text table per dataset: rows (distortion, method), columns clean, severities, mean;
    cells "mean ± std" accuracy in percent."""
    if table.empty:
        return "(no results)"
    blocks = []
    for dataset, part in table[table["metric"] == metric].groupby("dataset", sort=False):
        conditions = sorted(part["severity"].unique(), key=_severity_rank)
        rows = []
        for (distortion, method), cell in part.groupby(["distortion", "method"], sort=False):
            values = cell.set_index("severity")
            first = cell.iloc[0]
            supervision = ["yes" if first["uses_labels"] else "no", "yes" if first["uses_clean_images"] else "no"]
            rows.append([distortion, method, *supervision, *(_pm(values, c) for c in conditions)])
        header = ["distortion", "method", "labels", "clean imgs", *conditions]
        fraction = part["label_fraction"].iloc[0]
        blocks.append(f"{dataset} ({metric} probe accuracy %, mean ± std over seeds; label fraction {fraction:g})\n"
                      + tabulate(rows, headers=header, tablefmt="simple", disable_numparse=True))
    return "\n\n".join(blocks)


def _pm(values: pd.DataFrame, condition: str) -> str:
    if condition not in values.index:
        return ""
    row = values.loc[condition]
    text = f"{100 * row['mean']:.1f}"
    return text if pd.isna(row["std"]) else f"{text} ± {100 * row['std']:.1f}"


def _severity_rank(severity: str) -> float:
    if severity == CLEAN:
        return -1.0
    if severity == MEAN:
        return float("inf")
    return float(severity)
