"""Leaderboards from stored results: statistics per table, edge cases, summaries, CSV schema."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from robench.leaderboard import COLUMNS, SUMMARY_COLUMNS, build, read_csv, write_csv
from robench.results import CellKey, CellResult, PluginRecord

GOLDEN = Path(__file__).parent / "data" / "leaderboard_golden.csv"
N = 200  # test samples


def result(method: str, seed: int, rates: dict[str, float], distortion: str = "gaussian_noise",
           labels: bool = False, clean: bool = False, noise_seed: int | None = None) -> CellResult:
    """A cell whose per-sample correctness has the given rate per condition (first samples right)."""
    rng = np.random.default_rng(noise_seed if noise_seed is not None else seed)
    truth = rng.integers(0, 10, N)
    predictions, accuracy = {}, {}
    for condition, rate in rates.items():
        right = np.zeros(N, dtype=bool)
        right[rng.permutation(N)[: round(rate * N)]] = True
        predictions[condition] = np.where(right, truth, (truth + 1) % 10).tolist()
        accuracy[condition] = float(right.mean())
    severities = tuple(int(c) for c in rates if c != "clean")
    return CellResult(
        key=CellKey("toy", distortion, method, seed), settings_hash="x", backbone="vit", weights="w",
        label_fraction=0.1, uses_labels=labels, uses_clean_images=clean, severities=severities,
        accuracy={"linear": accuracy}, predictions={"linear": predictions}, test_labels=truth.tolist(),
        history=[], method=PluginRecord(method, "built-in", "0"),
        distortion=PluginRecord(distortion, "built-in", "0", {"group": "noise", "table": "cifar-10-c"}),
        dataset=PluginRecord("toy", "built-in", "0"), timing={}, environment={},
    )


def grid(seeds=(0, 1, 2)) -> list[CellResult]:
    out = []
    for seed in seeds:
        out.append(result("none", seed, {"clean": 0.90, "1": 0.80, "3": 0.60}))
        out.append(result("finetune", seed, {"clean": 0.88, "1": 0.84 + 0.01 * seed, "3": 0.70}, labels=True))
        out.append(result("asym_kd", seed, {"clean": 0.90, "1": 0.86, "3": 0.78 - 0.01 * seed}, clean=True))
    return out


def row(table: pd.DataFrame, method: str, severity: str, distortion: str = "gaussian_noise") -> pd.Series:
    part = table[(table["method"] == method) & (table["severity"] == severity) & (table["distortion"] == distortion)]
    return part.iloc[0]


def test_table_statistics() -> None:
    table, summary = build(grid(), ["none", "finetune", "asym_kd"])
    assert list(table.columns) == COLUMNS and list(summary.columns) == SUMMARY_COLUMNS
    assert len(table) == 3 * 4  # methods x (clean, 1, 3, mean)
    best = row(table, "asym_kd", "3")
    assert best["rank"] == 1 and math.isnan(best["p_value_vs_best"]) and best["test"] == ""
    assert best["ci95_low"] < best["mean"] < best["ci95_high"]
    none = row(table, "none", "3")
    assert none["rank"] == 3 and none["delta_vs_reference"] == 0
    assert none["test"] == "paired t (seeds)" and bool(none["significant"])
    assert none["p_mcnemar_vs_best"] < 1e-6  # 0.6 vs ~0.77 on 600 pooled pairs
    mean = row(table, "finetune", "mean")
    assert mean["mean"] == pytest.approx(np.mean([(0.84 + 0.01 * s + 0.70) / 2 for s in range(3)]), abs=1e-9)
    assert mean["delta_vs_reference"] == pytest.approx(mean["mean"] - row(table, "none", "mean")["mean"])
    assert bool(row(table, "finetune", "1")["uses_labels"]) and bool(row(table, "asym_kd", "1")["uses_clean_images"])


def test_p_values_are_holm_adjusted_within_each_table() -> None:
    from robench import stats

    table, _ = build(grid(), ["none", "finetune", "asym_kd"])
    part = table[table["severity"] == "3"].set_index("method")
    raw = [part.loc[m, "p_t_vs_best"] for m in ("none", "finetune")]
    assert [part.loc[m, "p_value_vs_best"] for m in ("none", "finetune")] == pytest.approx(stats.holm(raw))


def test_one_seed_falls_back_to_mcnemar_and_says_so() -> None:
    table, _ = build(grid(seeds=(0,)), ["none", "finetune", "asym_kd"])
    none = row(table, "none", "3")
    assert none["n_seeds"] == 1 and math.isnan(none["std"])
    assert none["test"] == "McNemar exact (1 seed)" and math.isnan(none["p_t_vs_best"])
    assert none["p_value_vs_best"] == pytest.approx(none["p_mcnemar_vs_best"] * 2)  # Holm, 2 comparisons
    assert not math.isnan(none["p_mcnemar_vs_best"])


def test_identical_methods_are_tied_and_not_significant() -> None:
    same = [result(m, s, {"clean": 0.9, "1": 0.7}, noise_seed=s) for m in ("a", "b", "c") for s in (0, 1)]
    table, summary = build(same, ["a", "b", "c"], reference="a")
    one = table[table["severity"] == "1"]
    assert (one["rank"] == 2.0).all()
    assert (one["p_value_vs_best"].dropna() == 1.0).all() and not one["significant"].dropna().any()
    assert (summary["mce"] == 1.0).all()


def test_missing_cell_uses_shared_seeds_and_complete_blocks() -> None:
    cells = grid() + [result(m, 0, {"clean": 0.9, "1": 0.5, "3": 0.4}, distortion="gaussian_blur")
                      for m in ("none", "finetune")]  # asym_kd has no gaussian_blur cell
    cells = [c for c in cells if not (c.key.method == "finetune" and c.key.seed == 2)]
    table, summary = build(cells, ["none", "finetune", "asym_kd"])
    assert row(table, "finetune", "1")["n_seeds"] == 2
    assert set(table[table["distortion"] == "gaussian_blur"]["method"]) == {"none", "finetune"}
    assert (summary["n_distortions"].tolist()) == [2, 2, 1]
    # one complete block (gaussian_noise): ranks exist, a Friedman test over one block does not
    assert summary["average_rank"].notna().all() and summary["friedman_chi2"].isna().all()


def test_without_the_reference_the_reference_columns_are_empty() -> None:
    cells = [c for c in grid() if c.key.method != "none"]
    table, summary = build(cells, ["finetune", "asym_kd"])
    assert table["delta_vs_reference"].isna().all() and table["p_value_vs_reference"].isna().all()
    assert summary["mce"].isna().all() and (summary["reference"] == "").all()


def test_corruption_errors_by_hand() -> None:
    table, summary = build(grid(seeds=(0,)), ["none", "finetune", "asym_kd"])
    s = summary.set_index("method")
    # finetune: errors 0.16, 0.30 vs none 0.20, 0.40; clean errors 0.12 vs 0.10
    assert s.loc["finetune", "mce"] == pytest.approx((0.16 + 0.30) / (0.20 + 0.40))
    assert s.loc["finetune", "relative_mce"] == pytest.approx((0.04 + 0.18) / (0.10 + 0.30))
    assert s.loc["none", "mce"] == 1.0


def test_csv_schema_against_the_golden_file(tmp_path: Path) -> None:
    table, _ = build(grid(), ["none", "finetune", "asym_kd"])
    path = tmp_path / "toy.csv"
    write_csv(table, path)
    assert path.read_text() == GOLDEN.read_text()
    assert read_csv(path)["severity"].tolist()[:4] == ["clean", "1", "3", "mean"]
