"""Statistics against scipy, hand computations and the worked example of Demsar (2006)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from robench import stats

# Demsar (2006), Table 6: AUC of C4.5, C4.5+m, C4.5+cf, C4.5+m+cf on 14 data sets
DEMSAR = np.array([
    [0.763, 0.768, 0.771, 0.798], [0.599, 0.591, 0.590, 0.569], [0.954, 0.971, 0.968, 0.967],
    [0.628, 0.661, 0.654, 0.657], [0.882, 0.888, 0.886, 0.898], [0.936, 0.931, 0.916, 0.931],
    [0.661, 0.668, 0.609, 0.685], [0.583, 0.583, 0.563, 0.625], [0.775, 0.838, 0.866, 0.875],
    [1.000, 1.000, 1.000, 1.000], [0.940, 0.962, 0.965, 0.962], [0.619, 0.666, 0.614, 0.669],
    [0.972, 0.981, 0.975, 0.975], [0.957, 0.978, 0.946, 0.970],
])


def test_paired_seed_tests_match_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.02, 7)
    b = a - rng.normal(0.01, 0.01, 7)
    result = stats.paired_seed_tests(a, b)
    assert result.n == 7
    assert result.p_t == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert result.p_wilcoxon == pytest.approx(sps.wilcoxon(a, b).pvalue)


def test_paired_seed_tests_edge_cases() -> None:
    one = stats.paired_seed_tests([0.9], [0.8])
    assert one.n == 1 and math.isnan(one.p_t) and math.isnan(one.p_wilcoxon)
    same = stats.paired_seed_tests([0.9, 0.8, 0.7], [0.9, 0.8, 0.7])
    assert same.p_t == 1.0 and same.p_wilcoxon == 1.0
    shifted = stats.paired_seed_tests([0.9, 0.8, 0.7], [0.8, 0.7, 0.6])
    assert shifted.p_t == 0.0  # a constant difference: t is infinite
    # three non-zero differences: the exact Wilcoxon test cannot go below 2 / 2^3
    assert shifted.p_wilcoxon == pytest.approx(0.25)


def test_mcnemar_exact_by_hand() -> None:
    # 3 vs 10 discordant pairs: p = 2 * P(X <= 3), X ~ Bin(13, 1/2) = 2 * (1 + 13 + 78 + 286) / 2^13
    assert stats.mcnemar_exact(3, 10) == pytest.approx(2 * 378 / 8192)
    assert stats.mcnemar_exact(10, 3) == pytest.approx(2 * 378 / 8192)
    assert stats.mcnemar_exact(0, 0) == 1.0
    assert stats.mcnemar_exact(5, 5) == 1.0
    table = np.array([[40, 3], [10, 47]])  # rows: A right/wrong; columns: B right/wrong
    a = np.repeat([True, True, False, False], table.ravel())
    b = np.repeat([True, False, True, False], table.ravel())
    assert stats.discordant(a, b) == (3, 10)


def test_holm_on_a_known_vector() -> None:
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4x, 3x, 2x, 1x = 0.02, 0.03, 0.06, 0.04 -> monotone 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    adjusted = stats.holm([0.5, float("nan"), 0.01])
    assert adjusted[0] == pytest.approx(0.5) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.02)
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # 2 x 0.8 caps at 1, and stays monotone


def test_friedman_and_nemenyi_on_demsars_worked_example() -> None:
    # the paper's published average ranks (its tie in 'voting' is broken, not averaged)
    published = stats.friedman_from_ranks([3.143, 2.000, 2.893, 1.964], 14)
    assert published.chi2 == pytest.approx(9.28, abs=0.01)
    assert published.iman_davenport == pytest.approx(3.69, abs=0.01)
    assert published.critical_difference == pytest.approx(1.25, abs=0.005)
    assert stats.nemenyi_cd(4, 14, alpha=0.10) == pytest.approx(1.12, abs=0.005)
    # from the table itself, ties averaged: ranks by hand
    computed = stats.friedman(DEMSAR)
    assert computed.average_ranks == pytest.approx([44 / 14, 28 / 14, 41 / 14, 27 / 14])
    assert computed.n_blocks == 14


def test_nemenyi_critical_values_match_demsars_table() -> None:
    q = {2: 1.960, 3: 2.343, 4: 2.569, 5: 2.728, 6: 2.850, 7: 2.949, 8: 3.031, 9: 3.102, 10: 3.164}
    for k, value in q.items():
        assert stats.nemenyi_cd(k, 6) == pytest.approx(value * math.sqrt(k * (k + 1) / 36), abs=1e-3)


def test_friedman_matches_scipy_without_ties() -> None:
    rng = np.random.default_rng(1)
    scores = rng.random((9, 4))
    ours = stats.friedman(scores)
    theirs = sps.friedmanchisquare(*scores.T)
    assert ours.chi2 == pytest.approx(theirs.statistic)
    assert ours.p_value == pytest.approx(theirs.pvalue)


def test_friedman_degenerate_inputs_do_not_crash() -> None:
    single = stats.friedman(np.array([[0.9, 0.8, 0.7]]))
    assert math.isnan(single.chi2) and math.isnan(single.p_value)
    same = stats.friedman(np.full((4, 3), 0.5))
    assert same.chi2 == pytest.approx(0.0) and same.p_value == pytest.approx(1.0)


def test_ranks_average_ties() -> None:
    assert stats.ranks(np.array([[0.9, 0.8, 0.9, 0.1]])).tolist() == [[1.5, 3.0, 1.5, 4.0]]


def test_bootstrap_interval() -> None:
    rng = np.random.default_rng(2)
    correct = rng.random((3, 2000)) < 0.7
    low, high = stats.bootstrap_ci(correct)
    assert low < correct.mean() < high and high - low < 0.1
    assert stats.bootstrap_ci(correct) == (low, high)  # seeded
    wide = stats.bootstrap_ci(correct[:, :100])
    assert wide[1] - wide[0] > high - low
    assert stats.bootstrap_ci(np.ones((2, 50))) == (1.0, 1.0)
