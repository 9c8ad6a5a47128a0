"""fpbench.analysis.stats against closed forms: exact permutation p-values of perfectly ordered data, scipy's
Spearman, hand-computed bound constants, and the verdict rule on each branch."""

import math

import numpy as np
import pytest
from scipy import stats as sps

from fpbench.analysis import stats as st


@pytest.mark.parametrize("blocks", [2, 3, 5])
def test_trend_p_value_of_perfect_order_is_one_over_k_factorial_to_the_m(blocks):
    # Page's L is maximal only when every block is in the predicted order: P = (1/k!)^m exactly.
    table = np.tile([4.0, 3.0, 2.0, 1.0], (blocks, 1))
    res = st.ordered_trend(table, increasing=False)
    assert res.pvalue == pytest.approx((1 / math.factorial(4)) ** blocks, rel=1e-6)
    assert res.effect == pytest.approx(1.0)
    assert res.verdict == (st.PASS if res.pvalue <= 0.05 else st.INCONCLUSIVE)


def test_trend_in_the_opposite_direction_fails():
    rng = np.random.default_rng(1)
    table = np.array([1.0, 2.0, 3.0, 4.0]) * np.exp(rng.normal(0, 0.05, (9, 4)))
    assert st.ordered_trend(table, increasing=False).verdict == st.FAIL
    assert st.ordered_trend(table, increasing=True).verdict == st.PASS


def test_trend_effect_is_mean_within_block_spearman():
    rng = np.random.default_rng(2)
    table = rng.normal(size=(6, 4))
    expected = np.mean([sps.spearmanr([1, 2, 3, 4], row).statistic for row in table])
    assert st.ordered_trend(table, increasing=True).effect == pytest.approx(expected)


def test_paired_sign_flip_p_value_is_exact():
    # all n differences positive: only the identity flip reaches the observed mean, p = 2^-n
    first, second = np.ones(7), np.array([1.5, 1.2, 2.0, 1.3, 1.1, 1.8, 1.4])
    res = st.paired_comparison(first, second)
    assert res.pvalue == pytest.approx(2.0**-7)
    assert res.effect == pytest.approx(np.mean(np.log(second)))
    assert res.verdict == st.PASS
    assert st.paired_comparison(second, first).verdict == st.FAIL


def test_paired_three_pairs_cannot_reach_five_percent():
    res = st.paired_comparison(np.ones(3), np.full(3, 2.0))
    assert res.pvalue == pytest.approx(1 / 8) and res.verdict == st.INCONCLUSIVE


def test_rank_correlation_statistic_is_spearman_and_sign_is_respected():
    rng = np.random.default_rng(3)
    x = rng.normal(size=30)
    y = x + rng.normal(0, 0.5, 30)
    res = st.rank_correlation(x, y, positive=True)
    assert res.statistic == pytest.approx(sps.spearmanr(x, y).statistic)
    assert res.verdict == st.PASS and res.pvalue < 0.01
    assert st.rank_correlation(x, y, positive=False).verdict == st.FAIL


def test_rank_correlation_permutes_within_groups():
    # two groups at different levels, no correlation inside either: pooled rho is large, but the
    # within-group permutation null knows that and does not pass the claim
    rng = np.random.default_rng(4)
    x = np.concatenate([rng.normal(0, 1, 20), rng.normal(10, 1, 20)])
    y = np.concatenate([rng.normal(0, 1, 20), rng.normal(10, 1, 20)])
    groups = np.repeat([0, 1], 20)
    assert sps.spearmanr(x, y).statistic > 0.7
    assert st.rank_correlation(x, y, positive=True, groups=groups).pvalue > 0.05


def test_rank_correlation_effect_and_null_are_one_within_group_estimand():
    """Effect, interval and null all read the mean of the within-group rhos (computed here with scipy)."""
    rng = np.random.default_rng(2)
    groups = np.repeat([0, 1, 2], 10)
    x = rng.normal(size=30) + 5 * groups
    y = x * np.array([1.0, 0.2, -0.5])[groups] + rng.normal(size=30)
    expected = np.mean([sps.spearmanr(x[groups == g], y[groups == g]).statistic for g in range(3)])
    res = st.rank_correlation(x, y, positive=True, groups=groups)
    assert res.statistic == pytest.approx(expected) and res.ci_low <= res.effect <= res.ci_high
    constant = np.where(groups == 2, 1.0, y)  # a group in which y does not vary carries no rho
    two = np.mean([sps.spearmanr(x[groups == g], y[groups == g]).statistic for g in range(2)])
    assert st.rank_correlation(x, constant, positive=True, groups=groups).statistic == pytest.approx(two)


def test_separation_in_decades():
    res = st.separation(np.array([0.5, 1.0, 2.0, 0.8]), np.array([1e-6, 2e-5, 3e-6]))
    assert res.effect == pytest.approx(math.log10(0.5 / 2e-5))
    assert res.verdict == st.PASS
    assert st.separation(np.array([1e-6, 2e-6, 3e-6]), np.array([1e-6, 2e-5, 3e-6])).verdict == st.FAIL


def test_within_noise_branches():
    assert st.within_noise([0.02], [0.02], [0.001], 0.003, 0.01).verdict == st.PASS
    assert st.within_noise([0.03], [0.02], [0.001], 0.003, 0.01).verdict == st.FAIL  # z = 10
    assert st.within_noise([0.02], [0.02], [0.01], 0.03, 0.01).verdict == st.INCONCLUSIVE  # too noisy


@pytest.mark.parametrize("p, p_opp, effect, ci_high, expected", [
    (0.01, 0.99, 0.8, 0.9, st.PASS), (0.01, 0.99, 0.2, 0.9, st.INCONCLUSIVE), (0.99, 0.01, -0.8, -0.5, st.FAIL),
    (0.2, 0.8, 0.1, 0.4, st.FAIL), (0.2, 0.8, 0.3, 0.7, st.INCONCLUSIVE)])
def test_decide(p, p_opp, effect, ci_high, expected):
    assert st.decide(p, p_opp, effect, ci_high, 0.05, 0.5) == expected


def test_calibration_false_positive_rate_and_power_of_the_trend_test():
    test = lambda t: st.ordered_trend(t, increasing=False, n_boot=100)
    null = st.calibrate(test, lambda r: (r.normal(size=(9, 4)),), reps=300)
    assert null["PASS_ci"][0] <= 0.05  # consistent with a size of at most alpha
    paper = np.array([0.0116, 0.0031, 0.0029, 0.0022])
    planted = st.calibrate(test, lambda r: (paper * np.exp(r.normal(0, 0.3, (9, 4))),), reps=100)
    assert planted["PASS"] >= 0.8


# ----- Holm's adjustment across a report's claims ------------------------------------------------

def test_holm_matches_the_worked_example_and_leaves_nan_out_of_the_family():
    from fpbench.analysis.stats import holm

    # sorted: 0.005 x 4 = 0.02, 0.01 x 3 = 0.03, 0.03 x 2 = 0.06, 0.04 x 1 -> max(0.06, 0.04) = 0.06
    adjusted = holm([0.01, 0.04, float("nan"), 0.03, 0.005])
    assert np.allclose(adjusted[[0, 1, 3, 4]], [0.03, 0.06, 0.06, 0.02]) and np.isnan(adjusted[2])
    assert holm([0.9, 0.8]).tolist() == [1.0, 1.0] and holm([0.01, 0.7]).tolist() == [0.02, 0.7]


def _uniform_p_test(u):
    from fpbench.analysis.stats import ALPHA, INCONCLUSIVE, PASS, ClaimTest

    return ClaimTest("u", u, u, 1 - u, 1.0, "e", 0.5, 1.5, 10, ALPHA, 0.0, PASS if u <= ALPHA else INCONCLUSIVE)


def test_a_pass_that_does_not_survive_holm_is_inconclusive():
    from fpbench.analysis.stats import INCONCLUSIVE, PASS, with_adjusted_p

    test = _uniform_p_test(0.03)
    assert with_adjusted_p(test, 0.04).verdict == PASS
    adjusted = with_adjusted_p(test, 0.09)
    assert adjusted.verdict == INCONCLUSIVE and "Holm" in adjusted.detail and adjusted.pvalue == 0.03


def test_family_wise_false_positives_exceed_alpha_raw_and_not_with_holm():
    """Five independent tests with uniform p under the null: at least one raw false PASS in
    1 - 0.95^5 = 0.226 of the sets; with Holm at most alpha."""
    from fpbench.analysis.claims import family_false_positives

    tests = [(_uniform_p_test, lambda rng: (rng.uniform(),)) for _ in range(5)]
    rates = family_false_positives(tests, reps=2000, seed=0)
    assert rates["raw_ci"][0] < 0.226 < rates["raw_ci"][1]
    assert rates["holm_ci"][0] <= 0.05 and rates["holm"] < 0.07
