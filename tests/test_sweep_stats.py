import math

import pytest

from poolbench.sweep.stats import (
    estimate,
    holm_adjust,
    paired_p_value,
    regularized_beta,
    t_quantile,
    t_two_sided_p,
    welch_p_value,
)

# Reference values from statistical tables (and SciPy 1.17: scipy.stats.t.ppf / ttest_ind).
T_975 = {1: 12.706204736174694, 2: 4.302652729749462, 3: 3.1824463052837078, 4: 2.7764451051977934,
         9: 2.262157162798205, 30: 2.0422724563012378}


@pytest.mark.parametrize("df,expected", sorted(T_975.items()))
def test_t_quantile_matches_tables(df, expected):
    assert t_quantile(0.975, df) == pytest.approx(expected, rel=1e-9)


def test_two_sided_p_at_known_points():
    assert t_two_sided_p(0.0, 5) == pytest.approx(1.0)
    assert t_two_sided_p(0.3, 5) == pytest.approx(0.7762490422632745, rel=1e-9)
    assert t_two_sided_p(40.0, 3) == pytest.approx(3.4380680789158506e-05, rel=1e-7)
    assert t_two_sided_p(math.inf, 3) == 0.0


def test_regularized_beta_edges_and_symmetry():
    assert regularized_beta(2.0, 3.0, 0.0) == 0.0 and regularized_beta(2.0, 3.0, 1.0) == 1.0
    assert regularized_beta(2.0, 3.0, 0.4) == pytest.approx(1 - regularized_beta(3.0, 2.0, 0.6))
    assert regularized_beta(1.0, 1.0, 0.37) == pytest.approx(0.37)  # I_x(1, 1) is the uniform CDF


def test_estimate_uses_student_t_interval():
    est = estimate([0.91, 0.93, 0.92])
    assert est.mean == pytest.approx(0.92) and est.n == 3
    assert est.std == pytest.approx(0.01)
    assert est.ci95 == pytest.approx(T_975[2] * 0.01 / math.sqrt(3))
    single = estimate([0.5])
    assert single.ci95 is None and single.std is None and single.n == 1
    with pytest.raises(ValueError):
        estimate([])


def test_welch_matches_reference_and_is_undefined_without_spread():
    assert welch_p_value([0.91, 0.93, 0.92], [0.95, 0.96, 0.945]) == pytest.approx(0.013981813937706353, rel=1e-9)
    assert welch_p_value([1, 2, 3, 4, 5.5], [2, 9, 4.1, 7]) == pytest.approx(0.22659991656883813, rel=1e-9)
    assert welch_p_value([1.0], [1.0, 2.0]) is None
    assert welch_p_value([3.0, 3.0], [4.0, 4.0]) is None  # parameter counts: nothing to test
    assert welch_p_value([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]) == pytest.approx(1.0)


def test_paired_t_test_matches_scipy_and_uses_the_pairing():
    a, b = [0.981, 0.984, 0.979, 0.986], [0.978, 0.982, 0.978, 0.983]
    assert paired_p_value(a, b) == pytest.approx(0.01821985474322239, rel=1e-9)  # scipy.stats.ttest_rel
    # the same values unpaired: the seed-to-seed spread hides the shift that every pair shows
    assert welch_p_value(a, b) > 0.1
    assert paired_p_value([1.0, 2.0], [1.0, 2.0]) is None  # no spread in the differences
    assert paired_p_value([1.0], [2.0]) is None
    with pytest.raises(ValueError):
        paired_p_value([1.0, 2.0], [1.0])


def test_holm_adjustment_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 -> kept at 0.06 (monotone)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.6, 0.9]) == [1.0, 1.0]  # capped at 1
    assert holm_adjust([]) == []
