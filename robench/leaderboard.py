"""Leaderboards with significance tests, built from stored cell results.

For every (dataset, distortion, severity, metric) table: each method's mean and standard
deviation over seeds, a bootstrap 95% interval (seeds and test samples resampled), its rank,
its difference to the reference method, and Holm-adjusted p-values against the best method and
against the reference. Severity is ``clean``, ``1``..``5`` or ``mean`` (the mean over the
evaluated severities, taken per seed). A summary per dataset adds, over distortions, the mean
accuracy, the corruption error relative to the reference (CE, relative CE, as ImageNet-C's mCE),
the average rank, the Friedman test and the Nemenyi critical difference. Every column is
documented in ``leaderboards/README.md``.

Which paired test decides ``p_value_vs_best``: the paired t-test over seeds when two or more
seeds are shared (it measures the difference in expected accuracy across training randomness,
and with 3-5 seeds it has power where the exact Wilcoxon test cannot reach p < 0.05 before 6
seeds); with one seed there is no seed test, and McNemar's exact test on the per-sample
predictions decides (column ``test``). All three raw p-values are in the CSV.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from tabulate import tabulate

from robench import stats
from robench.atomic import atomic_path
from robench.results import CellResult

KEYS = ["dataset", "distortion", "severity", "method", "metric"]
COLUMNS = [
    "dataset", "backbone", "weights", "distortion", "group", "severity", "method", "uses_labels",
    "uses_clean_images", "label_fraction", "metric", "n_seeds", "mean", "std", "ci95_low", "ci95_high",
    "rank", "delta_vs_reference", "p_value_vs_best", "significant", "p_value_vs_reference",
    "significant_vs_reference", "test", "p_t_vs_best", "p_wilcoxon_vs_best", "p_mcnemar_vs_best",
]
SUMMARY_COLUMNS = [
    "dataset", "metric", "method", "uses_labels", "uses_clean_images", "label_fraction", "n_distortions",
    "mean_accuracy", "clean_accuracy", "mce", "relative_mce", "average_rank", "friedman_chi2",
    "friedman_p", "iman_davenport_p", "critical_difference", "reference",
]
MEAN, CLEAN = "mean", "clean"
ALPHA = 0.05


@dataclass
class _Entry:
    """One method in one table, per seed: accuracy; per-sample correctness (averaged over
    severities for ``mean``, for the bootstrap); and the paired outcomes for McNemar (for
    ``mean``, every severity's samples one after the other)."""

    accuracy: dict[int, float]
    correct: dict[int, np.ndarray]
    outcomes: dict[int, np.ndarray]
    result: CellResult


def build(
    results: Sequence[CellResult], methods: Sequence[str] = (), reference: str = "none"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The long leaderboard (:data:`COLUMNS`) and the per-dataset summary (:data:`SUMMARY_COLUMNS`).

    ``methods`` gives the row order (others follow by name); ``reference`` names the method the
    deltas, CE and reference p-values refer to (absent: those columns are empty).
    """
    tables = _collect(results)
    order = list(dict.fromkeys([*methods, *sorted({r.key.method for r in results})]))
    rows = []
    for (dataset, distortion, severity, metric), entries in tables.items():
        rows.extend(_table_rows(dataset, distortion, severity, metric, entries, order, reference))
    table = pd.DataFrame(rows, columns=COLUMNS)
    if not table.empty:
        table["_m"] = table["method"].map(order.index)
        table["_s"] = table["severity"].map(_severity_rank)
        table = table.sort_values(["dataset", "distortion", "_m", "metric", "_s"], kind="stable")
        table = table.drop(columns=["_m", "_s"]).reset_index(drop=True)
    return table, summarise(table, order, reference)


def _collect(results: Sequence[CellResult]) -> dict[tuple[str, str, str, str], dict[str, _Entry]]:
    """(dataset, distortion, condition, metric) -> method -> per-seed accuracy and correctness."""
    tables: dict[tuple[str, str, str, str], dict[str, _Entry]] = defaultdict(dict)
    for r in results:
        labels = np.asarray(r.test_labels)
        for metric, by_condition in r.accuracy.items():
            outcomes = {c: np.asarray(r.predictions[metric][c]) == labels for c in by_condition}
            severities = [str(s) for s in r.severities]
            correct = dict(outcomes)
            correct[MEAN] = np.mean([outcomes[s] for s in severities], axis=0)
            outcomes[MEAN] = np.concatenate([outcomes[s] for s in severities])
            accuracy = dict(by_condition)
            accuracy[MEAN] = float(np.mean([by_condition[s] for s in severities]))
            for condition in accuracy:
                entry = tables[(r.key.dataset, r.key.distortion, condition, metric)].setdefault(
                    r.key.method, _Entry({}, {}, {}, r))
                entry.accuracy[r.key.seed] = accuracy[condition]
                entry.correct[r.key.seed] = correct[condition]
                entry.outcomes[r.key.seed] = outcomes[condition]
    return tables


def _table_rows(dataset: str, distortion: str, severity: str, metric: str, entries: dict[str, _Entry],
                order: list[str], reference: str) -> list[dict]:
    names = sorted(entries, key=order.index)
    means = {m: float(np.mean(list(entries[m].accuracy.values()))) for m in names}
    best = max(names, key=lambda m: (means[m], -order.index(m)))
    rank = dict(zip(names, stats.ranks(np.array([[means[m] for m in names]]))[0]))
    versus_best = {m: _compare(entries[m], entries[best]) for m in names if m != best}
    versus_ref = ({m: _compare(entries[m], entries[reference]) for m in names if m != reference}
                  if reference in entries else {})
    adjusted_best = dict(zip(versus_best, stats.holm([c["p"] for c in versus_best.values()])))
    adjusted_ref = dict(zip(versus_ref, stats.holm([c["p"] for c in versus_ref.values()])))
    rows = []
    for m in names:
        e = entries[m]
        seeds = sorted(e.accuracy)
        values = [e.accuracy[s] for s in seeds]
        low, high = stats.bootstrap_ci(np.stack([e.correct[s] for s in seeds]))
        comparison = versus_best.get(m, {})
        r = e.result
        rows.append({
            "dataset": dataset, "backbone": r.backbone, "weights": r.weights, "distortion": distortion,
            "group": r.distortion.details.get("group", ""), "severity": severity, "method": m,
            "uses_labels": r.uses_labels, "uses_clean_images": r.uses_clean_images,
            "label_fraction": r.label_fraction, "metric": metric, "n_seeds": len(seeds), "mean": means[m],
            "std": float(np.std(values, ddof=1)) if len(values) > 1 else math.nan,
            "ci95_low": low, "ci95_high": high, "rank": float(rank[m]),
            "delta_vs_reference": means[m] - means[reference] if reference in means else math.nan,
            "p_value_vs_best": adjusted_best.get(m, math.nan),
            "significant": _significant(adjusted_best.get(m, math.nan)),
            "p_value_vs_reference": adjusted_ref.get(m, math.nan),
            "significant_vs_reference": _significant(adjusted_ref.get(m, math.nan)),
            "test": comparison.get("test", ""), "p_t_vs_best": comparison.get("p_t", math.nan),
            "p_wilcoxon_vs_best": comparison.get("p_wilcoxon", math.nan),
            "p_mcnemar_vs_best": comparison.get("p_mcnemar", math.nan),
        })
    return rows


def _compare(a: _Entry, b: _Entry) -> dict:
    """Paired tests of method a against b on their shared seeds; 'p' is the deciding p-value."""
    seeds = sorted(set(a.accuracy) & set(b.accuracy))
    seed_tests = stats.paired_seed_tests([a.accuracy[s] for s in seeds], [b.accuracy[s] for s in seeds])
    only_a = only_b = 0
    for s in seeds:  # pooled over seeds: same seed, same test pixels for both methods
        x, y = stats.discordant(a.outcomes[s], b.outcomes[s])
        only_a, only_b = only_a + x, only_b + y
    p_mcnemar = stats.mcnemar_exact(only_a, only_b) if seeds else math.nan
    by_seeds = seed_tests.n >= 2
    return {
        "p": seed_tests.p_t if by_seeds else p_mcnemar,
        "test": "paired t (seeds)" if by_seeds else "McNemar exact (1 seed)",
        "p_t": seed_tests.p_t, "p_wilcoxon": seed_tests.p_wilcoxon, "p_mcnemar": p_mcnemar,
    }


def _significant(p: float) -> bool | float:
    return math.nan if math.isnan(p) else bool(p < ALPHA)


def summarise(table: pd.DataFrame, order: Sequence[str] = (), reference: str = "none") -> pd.DataFrame:
    """Per (dataset, metric, method): means over distortions, CE against ``reference``, average
    rank over distortions, the Friedman test and the Nemenyi critical difference."""
    rows = []
    for (dataset, metric), part in table.groupby(["dataset", "metric"], sort=False):
        per_severity = part.pivot_table(index=["distortion", "severity"], columns="method", values="mean")
        scores = per_severity.xs(MEAN, level="severity") if MEAN in per_severity.index.get_level_values(1) \
            else per_severity.iloc[:0]
        methods = [m for m in (order or scores.columns) if m in scores.columns]
        complete = scores[methods].dropna()  # Friedman needs every method in every block
        test = stats.friedman(complete.to_numpy()) if len(methods) else None
        ranks = dict(zip(methods, test.average_ranks)) if test is not None and len(complete) else {}
        ce = _corruption_errors(per_severity, reference)
        for m in methods:
            first = part[part["method"] == m].iloc[0]
            rows.append({
                "dataset": dataset, "metric": metric, "method": m, "uses_labels": first["uses_labels"],
                "uses_clean_images": first["uses_clean_images"], "label_fraction": first["label_fraction"],
                "n_distortions": int(scores[m].notna().sum()), "mean_accuracy": float(scores[m].mean()),
                "clean_accuracy": _clean_mean(per_severity, m), "mce": ce.get(m, (math.nan, math.nan))[0],
                "relative_mce": ce.get(m, (math.nan, math.nan))[1], "average_rank": ranks.get(m, math.nan),
                "friedman_chi2": test.chi2 if test else math.nan, "friedman_p": test.p_value if test else math.nan,
                "iman_davenport_p": test.p_iman_davenport if test else math.nan,
                "critical_difference": test.critical_difference if test else math.nan,
                "reference": reference if reference in scores.columns else "",
            })
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS)


def _clean_mean(per_severity: pd.DataFrame, method: str) -> float:
    levels = per_severity.index.get_level_values(1)
    return float(per_severity[method][levels == CLEAN].mean()) if CLEAN in levels else math.nan


def _corruption_errors(per_severity: pd.DataFrame, reference: str) -> dict[str, tuple[float, float]]:
    """method -> (mCE, relative mCE) over distortions, with ``reference`` as the baseline:
    CE_c = sum_s E(f, s, c) / sum_s E(ref, s, c); relative CE subtracts each model's clean
    error per severity first (Hendrycks & Dietterich, 2019). NaN where not defined."""
    if reference not in per_severity.columns:
        return {}
    errors = 1 - per_severity
    out: dict[str, tuple[float, float]] = {}
    for method in errors.columns:
        ce, relative = [], []
        for _, block in errors.groupby(level=0):
            block = block.droplevel(0)
            numeric = [s for s in block.index if s not in (MEAN, CLEAN)]
            f, ref = block.loc[numeric, method], block.loc[numeric, reference]
            ce.append(_ratio(f.sum(), ref.sum()))
            if CLEAN in block.index:
                relative.append(_ratio((f - block.loc[CLEAN, method]).sum(), (ref - block.loc[CLEAN, reference]).sum()))
        out[method] = (_nanmean(ce), _nanmean(relative))
    return out


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b and not (math.isnan(a) or math.isnan(b)) else math.nan


def _nanmean(values: list[float]) -> float:
    finite = [v for v in values if not math.isnan(v)]
    return float(np.mean(finite)) if finite else math.nan


def write_csv(table: pd.DataFrame, path: Path) -> None:
    """Write a table as CSV atomically (six decimals, so identical runs give identical bytes)."""
    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f", lineterminator="\n")


def read_csv(path: Path) -> pd.DataFrame:
    """Read a leaderboard CSV written by :func:`write_csv` (severity kept as text)."""
    return pd.read_csv(path, dtype={"severity": str})


def format_summary(table: pd.DataFrame, metric: str = "linear", tablefmt: str = "simple") -> str:
    """A text table per dataset: rows (distortion, method) with their supervision, columns
    clean, severities, mean; cells "mean ± std" accuracy in percent, ``*`` where the method is
    significantly worse than the best (Holm-adjusted, p < 0.05)."""
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
        blocks.append(f"{dataset} ({metric} probe accuracy %, mean ± std over seeds; label fraction {fraction:g}; "
                      "* significantly below the best)\n"
                      + tabulate(rows, headers=header, tablefmt=tablefmt, disable_numparse=True))
    return "\n\n".join(blocks)


def format_overview(summary: pd.DataFrame, metric: str = "linear", tablefmt: str = "simple") -> str:
    """The summary file as text: per method, mean accuracy, mCE, average rank; Friedman and CD."""
    blocks = []
    for dataset, part in summary[summary["metric"] == metric].groupby("dataset", sort=False):
        rows = [[r.method, f"{100 * r.mean_accuracy:.1f}", f"{100 * r.clean_accuracy:.1f}", _fmt(r.mce),
                 _fmt(r.relative_mce), _fmt(r.average_rank)] for r in part.itertuples()]
        first = part.iloc[0]
        tail = (f"Friedman p = {_fmt(first['friedman_p'], 4)} over {int(part['n_distortions'].max())} distortion(s); "
                f"Nemenyi CD = {_fmt(first['critical_difference'])}"
                + (f"; CE relative to {first['reference']!r}" if first["reference"] else ""))
        blocks.append(f"{dataset} summary ({metric})\n"
                      + tabulate(rows, headers=["method", "mean acc %", "clean acc %", "mCE", "rel. mCE", "avg rank"],
                                 tablefmt=tablefmt, disable_numparse=True) + "\n" + tail)
    return "\n\n".join(blocks)


def _fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _pm(values: pd.DataFrame, condition: str) -> str:
    if condition not in values.index:
        return ""
    row = values.loc[condition]
    text = f"{100 * row['mean']:.1f}"
    text = text if pd.isna(row["std"]) else f"{text} ± {100 * row['std']:.1f}"
    return text + ("*" if row["significant"] is True else "")


def _severity_rank(severity: str) -> float:
    if severity == CLEAN:
        return -1.0
    if severity == MEAN:
        return float("inf")
    return float(severity)
