"""src/stats.py against textbook values: Student's t quantiles, the t interval of a mean, Welch's interval."""
import math

import pytest

from src import stats

# two-sided 95 % (p = 0.975) and 99 % (p = 0.995) critical values of Student's t, from printed tables
T_TABLE = {
    (0.975, 1): 12.706, (0.975, 2): 4.303, (0.975, 3): 3.182, (0.975, 4): 2.776, (0.975, 5): 2.571,
    (0.975, 9): 2.262, (0.975, 10): 2.228, (0.975, 20): 2.086, (0.975, 30): 2.042, (0.975, 120): 1.980,
    (0.995, 4): 4.604, (0.995, 10): 3.169, (0.95, 5): 2.015, (0.9, 8): 1.397,
}


@pytest.mark.parametrize("p,df", sorted(T_TABLE))
def test_t_quantile_matches_the_printed_table(p, df):
    assert stats.t_quantile(p, df) == pytest.approx(T_TABLE[(p, df)], abs=6e-4)


def test_t_quantile_limits_symmetry_and_non_integer_df():
    assert stats.t_quantile(0.975, 1e9) == pytest.approx(1.959964, abs=1e-5)  # the normal quantile
    assert stats.t_quantile(0.5, 3) == pytest.approx(0.0, abs=1e-9)
    assert stats.t_quantile(0.025, 4) == pytest.approx(-stats.t_quantile(0.975, 4), abs=1e-9)
    # df = 1 is the Cauchy distribution: quantile tan(pi (p - 1/2)); df = 2 has a closed form too
    for p in (0.6, 0.9, 0.975, 0.999):
        assert stats.t_quantile(p, 1) == pytest.approx(math.tan(math.pi * (p - 0.5)), rel=1e-8)
        a = 4 * p * (1 - p)
        assert stats.t_quantile(p, 2) == pytest.approx((2 * p - 1) * math.sqrt(2 / a), rel=1e-8)
    # Welch's degrees of freedom are fractional: the quantile lies between its integer neighbours
    assert stats.t_quantile(0.975, 4) < stats.t_quantile(0.975, 3.53) < stats.t_quantile(0.975, 3)
    assert stats.t_cdf(stats.t_quantile(0.975, 3.53), 3.53) == pytest.approx(0.975, abs=1e-10)
    with pytest.raises(ValueError, match="p must be in"):
        stats.t_quantile(1.0, 3)
    with pytest.raises(ValueError, match="degrees of freedom"):
        stats.t_cdf(1.0, 0)


def test_mean_interval_of_five_seeds():
    got = stats.mean_interval([72.0, 73.0, 74.0, 75.0, 76.0])
    assert got["n"] == 5 and got["mean"] == pytest.approx(74.0)
    assert got["std"] == pytest.approx(math.sqrt(2.5))  # sample std, n - 1
    half = 2.776445 * math.sqrt(2.5) / math.sqrt(5)
    assert (got["low"], got["high"]) == pytest.approx((74.0 - half, 74.0 + half), abs=1e-5)
    one = stats.mean_interval([70.0])
    assert one["std"] is None and one["low"] is None  # one seed: no spread, no interval


def test_welch_difference_degrees_of_freedom_interval_and_verdict():
    a, b = [1.0, 2.0, 3.0, 4.0, 5.0], [2.0, 4.0, 6.0]  # variances 2.5 and 4
    got = stats.welch_difference(a, b)
    se2 = 2.5 / 5 + 4.0 / 3
    df = se2 ** 2 / ((2.5 / 5) ** 2 / 4 + (4.0 / 3) ** 2 / 2)
    assert got["diff"] == pytest.approx(-1.0) and got["df"] == pytest.approx(df) and df == pytest.approx(3.5328, abs=1e-4)
    half = stats.t_quantile(0.975, df) * math.sqrt(se2)
    assert (got["low"], got["high"]) == pytest.approx((-1.0 - half, -1.0 + half))
    assert got["low"] == pytest.approx(-4.9637, abs=1e-4)  # as SciPy 1.17 ttest_ind(a, b, equal_var=False) gives
    assert got["within_noise"] is True and stats.verdict(got) == "within noise"
    clear = stats.welch_difference([80.0, 80.5, 81.0], [70.0, 70.4, 71.0])
    assert clear["within_noise"] is False and stats.verdict(clear) == "higher"
    assert stats.verdict(stats.welch_difference([70.0, 70.4, 71.0], [80.0, 80.5, 81.0])) == "lower"
    single = stats.welch_difference([80.0], [70.0, 71.0])
    assert single["low"] is None and stats.verdict(single) == "one seed, no interval"
