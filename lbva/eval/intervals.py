"""Confidence intervals for success rates: how much an evaluation of a few dozen episodes can say.

* :func:`wilson_interval` — the Wilson score interval of one success rate (Wilson 1927). Unlike the normal
  approximation it stays inside [0, 1] and is not empty at 0 or n successes, which is where small evaluations
  often land.
* :func:`difference_interval` — the interval of a difference between two independent success rates, from the two
  Wilson intervals (Newcombe 1998, "method 10"). A difference whose interval excludes 0 is one the episodes
  support; :func:`differs` says so.
* :func:`format_rate` — "72 % [61, 81]" for reports.

Episodes pooled across training seeds are treated as independent Bernoulli trials: the interval covers episode
noise (which initial state a policy met), not the spread between training seeds; a report that pools seeds
shows that spread beside it.
"""

from __future__ import annotations

import math
from statistics import NormalDist


def _z(confidence: float) -> float:
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _check_counts(successes: int, n: int) -> None:
    if int(n) != n or n < 1:
        raise ValueError(f"the number of episodes must be a positive whole number; got n={n!r}")
    if int(successes) != successes or not 0 <= successes <= n:
        raise ValueError(f"successes must be a whole number between 0 and n={n}; got {successes!r}")


def wilson_interval(successes: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval ``(low, high)`` of ``successes`` out of ``n`` episodes."""
    _check_counts(successes, n)
    z = _z(confidence)
    p = successes / n
    z2n = z * z / n
    centre = (p + z2n / 2.0) / (1.0 + z2n)
    half = z * math.sqrt(p * (1.0 - p) / n + z2n / (4.0 * n)) / (1.0 + z2n)
    # at 0 and n successes the bound is exactly 0 or 1; rounding must not push it past
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def difference_interval(successes_a: int, n_a: int, successes_b: int, n_b: int,
                        confidence: float = 0.95) -> tuple[float, float, float]:
    """``(difference, low, high)`` of rate a − rate b, by Newcombe's hybrid score method (his method 10)."""
    p_a, p_b = successes_a / max(n_a, 1), successes_b / max(n_b, 1)
    low_a, high_a = wilson_interval(successes_a, n_a, confidence)
    low_b, high_b = wilson_interval(successes_b, n_b, confidence)
    d = p_a - p_b
    below = math.sqrt((p_a - low_a) ** 2 + (high_b - p_b) ** 2)
    above = math.sqrt((high_a - p_a) ** 2 + (p_b - low_b) ** 2)
    return d, d - below, d + above


def differs(successes_a: int, n_a: int, successes_b: int, n_b: int, confidence: float = 0.95) -> bool:
    """Whether the interval of rate a − rate b excludes 0: the episodes show a difference, not just noise."""
    _, low, high = difference_interval(successes_a, n_a, successes_b, n_b, confidence)
    return low > 0.0 or high < 0.0


def format_rate(successes: int, n: int, confidence: float = 0.95) -> str:
    """``"72 % [61, 81]"``: the success rate and its Wilson interval in whole percent."""
    low, high = wilson_interval(successes, n, confidence)
    return f"{100 * successes / n:.0f} % [{100 * low:.0f}, {100 * high:.0f}]"
