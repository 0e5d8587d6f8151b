"""Significance tests for leaderboards (scipy underneath; every function is pure).

Two methods of a cell are compared twice, because they are paired twice over:

- over seeds: the same seed gives both methods the same label subset and the same distorted
  pixels, so per-seed accuracies pair up (paired t-test and Wilcoxon signed-rank);
- over test samples: every method sees identical distorted pixels, so per-sample correctness
  pairs up, and McNemar's exact test applies to the discordant counts pooled over seeds.

Across cells (distortions), methods are ranked, the Friedman test asks whether the ranks differ,
and the Nemenyi critical difference says which differ (Demsar, 2006, "Statistical Comparisons of
Classifiers over Multiple Data Sets", JMLR).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps


@dataclass(frozen=True)
class PairedSeeds:
    """Tests of mean accuracy differences over paired seeds (NaN when fewer than 2 seeds)."""

    n: int
    p_t: float
    p_wilcoxon: float


def paired_seed_tests(a: Sequence[float], b: Sequence[float]) -> PairedSeeds:
    """Paired t-test and Wilcoxon signed-rank test (two-sided) of per-seed accuracies.

    Identical samples give p = 1 (scipy returns NaN for a zero variance of the differences).
    Wilcoxon uses the exact distribution with zero differences dropped ('wilcox'), so with fewer
    than 6 non-zero differences it cannot reach p < 0.05.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n = len(a)
    if n < 2:
        return PairedSeeds(n, math.nan, math.nan)
    diff = a - b
    if np.allclose(diff, 0):
        return PairedSeeds(n, 1.0, 1.0)
    if np.allclose(diff, diff[0]):  # constant non-zero difference: t is infinite
        p_t = 0.0
    else:
        p_t = float(sps.ttest_rel(a, b).pvalue)
    p_w = float(sps.wilcoxon(a, b, zero_method="wilcox").pvalue) if np.count_nonzero(diff) else 1.0
    return PairedSeeds(n, p_t, p_w)


def mcnemar_exact(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar test from the discordant counts (samples only A got right, only
    B got right): a binomial test of ``only_a`` among ``only_a + only_b`` at 1/2."""
    total = only_a + only_b
    if total == 0:
        return 1.0
    return float(sps.binomtest(only_a, total, 0.5).pvalue)


def discordant(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[int, int]:
    """(# samples only A got right, # only B got right), over all paired entries."""
    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    return int(np.sum(a & ~b)), int(np.sum(~a & b))


def bootstrap_ci(
    correct: np.ndarray, level: float = 0.95, resamples: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of mean accuracy from correctness ``(seeds, samples)``
    (values in [0, 1]; a per-sample mean over severities is fine).

    Resamples seeds and test samples (two-stage, each with replacement), so the interval covers
    both training randomness and test-set sampling. Deterministic for a given ``seed``; memory
    stays at ``100 x samples`` counts whatever the number of resamples.
    """
    correct = np.asarray(correct, dtype=float)
    if correct.ndim == 1:
        correct = correct[None]
    n_seeds, n_samples = correct.shape
    rng = np.random.default_rng(seed)
    estimates = []
    for start in range(0, resamples, 100):
        chunk = min(100, resamples - start)
        picks = rng.integers(0, n_samples, size=(chunk, n_samples)) + n_samples * np.arange(chunk)[:, None]
        counts = np.bincount(picks.ravel(), minlength=chunk * n_samples).reshape(chunk, n_samples)
        per_seed = correct @ counts.T / n_samples  # (seeds, chunk): each resample's accuracies
        seeds = rng.integers(0, n_seeds, size=(chunk, n_seeds))
        estimates.append(per_seed[seeds, np.arange(chunk)[:, None]].mean(1))
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(np.concatenate(estimates), [tail, 100 - tail])
    return float(low), float(high)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries are left out of the family and kept NaN)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    order = valid[np.argsort(p[valid], kind="stable")]
    m = len(order)
    running = 0.0
    for i, index in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[index]))
        out[index] = running
    return out.tolist()


def ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks of methods (columns) within each block (row); 1 = highest score, ties averaged."""
    scores = np.asarray(scores, dtype=float)
    return np.vstack([sps.rankdata(-row) for row in scores]) if scores.size else scores


@dataclass(frozen=True)
class Friedman:
    """Friedman test over blocks: average ranks, chi-square statistic and p-value, the
    Iman-Davenport F and its p-value, and the Nemenyi critical difference at ``alpha``."""

    average_ranks: np.ndarray
    n_blocks: int
    chi2: float
    p_value: float
    iman_davenport: float
    p_iman_davenport: float
    critical_difference: float


def friedman_from_ranks(average_ranks: Sequence[float], n_blocks: int, alpha: float = 0.05) -> Friedman:
    """Friedman's chi-square from average ranks, as Demsar (2006) computes it (no tie correction):
    chi2 = 12 N / (k (k + 1)) [sum R_j^2 - k (k + 1)^2 / 4]."""
    r = np.asarray(average_ranks, dtype=float)
    k, n = len(r), n_blocks
    if k < 2 or n < 2:
        return Friedman(r, n, math.nan, math.nan, math.nan, math.nan, nemenyi_cd(k, n, alpha))
    chi2 = 12 * n / (k * (k + 1)) * (np.sum(r**2) - k * (k + 1) ** 2 / 4)
    p = float(sps.chi2.sf(chi2, k - 1))
    denominator = n * (k - 1) - chi2
    f = (n - 1) * chi2 / denominator if denominator > 0 else math.inf
    p_f = float(sps.f.sf(f, k - 1, (k - 1) * (n - 1))) if math.isfinite(f) else 0.0
    return Friedman(r, n, float(chi2), p, float(f), p_f, nemenyi_cd(k, n, alpha))


def friedman(scores: np.ndarray, alpha: float = 0.05) -> Friedman:
    """Friedman test of a ``(blocks, methods)`` score matrix (higher is better)."""
    scores = np.asarray(scores, dtype=float)
    return friedman_from_ranks(ranks(scores).mean(0), scores.shape[0], alpha)


def nemenyi_cd(k: int, n_blocks: int, alpha: float = 0.05) -> float:
    """Nemenyi critical difference of average ranks: q_alpha * sqrt(k (k + 1) / (6 N)), with
    q_alpha the studentized range quantile over sqrt(2) (Demsar's Table 5a)."""
    if k < 2 or n_blocks < 1:
        return math.nan
    q = sps.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    return float(q * math.sqrt(k * (k + 1) / (6 * n_blocks)))
