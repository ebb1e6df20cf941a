"""Success-rate intervals against values worked out by hand and the published tables of Newcombe (1998)."""

import math
import re

import pytest

from lbva.eval.intervals import difference_interval, differs, format_rate, wilson_interval

Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


def test_wilson_at_zero_and_all_successes_has_a_closed_form():
    # with p = 0 the Wilson bounds are 0 and z^2 / (n + z^2); with p = 1 they mirror
    for n in (10, 20, 80):
        assert wilson_interval(0, n) == (0.0, pytest.approx(Z95**2 / (n + Z95**2), abs=1e-12))
        assert wilson_interval(n, n) == (pytest.approx(n / (n + Z95**2), abs=1e-12), 1.0)


def test_wilson_matches_the_formula_worked_by_hand():
    # 14 of 20: p = 0.7, z^2/n = 0.19207; centre = (0.7 + 0.09604) / 1.19207 = 0.66780,
    # half width = 1.95996 * sqrt(0.0105 + 0.0024010) / 1.19207 = 0.18675
    low, high = wilson_interval(14, 20)
    assert low == pytest.approx(0.48103, abs=5e-5) and high == pytest.approx(0.85452, abs=5e-5)


@pytest.mark.parametrize("k, n, low, high", [
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
    (29, 29, 0.8830, 1.0),
])
def test_wilson_matches_newcombes_single_proportion_table(k, n, low, high):
    got = wilson_interval(k, n)
    assert got[0] == pytest.approx(low, abs=5e-5) and got[1] == pytest.approx(high, abs=5e-5)


@pytest.mark.parametrize("a, b, low, high", [
    ((56, 70), (48, 80), 0.0524, 0.3339), ((9, 10), (3, 10), 0.1705, 0.8090), ((6, 7), (2, 7), 0.0582, 0.8062),
    ((5, 56), (0, 29), -0.0381, 0.1926), ((0, 10), (0, 20), -0.1611, 0.2775),
])
def test_difference_matches_newcombes_method_10_table(a, b, low, high):
    d, lo, hi = difference_interval(*a, *b)
    assert d == pytest.approx(a[0] / a[1] - b[0] / b[1])
    assert lo == pytest.approx(low, abs=5e-5) and hi == pytest.approx(high, abs=5e-5)


def test_swapping_the_two_rates_mirrors_the_difference_interval():
    d, lo, hi = difference_interval(58, 80, 37, 80)
    d2, lo2, hi2 = difference_interval(37, 80, 58, 80)
    assert (d2, lo2, hi2) == pytest.approx((-d, -hi, -lo))


def test_differs_only_when_the_interval_excludes_zero():
    assert differs(58, 80, 37, 80)  # 72 % against 46 %: the noisy-history ablation's size
    assert not differs(58, 80, 54, 80)  # 72 % against 68 %: four episodes of 80
    assert not differs(0, 20, 0, 20)
    assert differs(20, 20, 0, 20)


def test_a_wider_confidence_gives_a_wider_interval():
    lo95, hi95 = wilson_interval(11, 20, 0.95)
    lo99, hi99 = wilson_interval(11, 20, 0.99)
    assert lo99 < lo95 < 0.55 < hi95 < hi99


def test_format_rate_shows_whole_percent_and_the_bounds():
    assert format_rate(14, 20) == "70 % [48, 85]"
    assert format_rate(0, 80) == "0 % [0, 5]"


@pytest.mark.parametrize("k, n, what", [(3, 0, "n=0"), (-1, 10, "-1"), (11, 10, "n=10"), (2.5, 10, "2.5")])
def test_impossible_counts_are_refused_naming_the_value(k, n, what):
    with pytest.raises(ValueError, match=re.escape(what)):
        wilson_interval(k, n)


def test_a_confidence_outside_0_1_is_refused():
    with pytest.raises(ValueError, match="95"):
        wilson_interval(3, 10, confidence=95)


def test_interval_contains_the_rate_for_every_count():
    for n in (1, 7, 20, 60):
        for k in range(n + 1):
            low, high = wilson_interval(k, n)
            assert 0.0 <= low <= k / n <= high <= 1.0 and not math.isnan(low + high)
