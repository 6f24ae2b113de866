"""Small-sample statistics for the study and sweep reports (NumPy-free, no SciPy): mean, sample standard
deviation, a 95 % confidence interval from Student's t distribution, and Welch's interval for a
difference of two means.

Student's t quantile is found by bisection on its distribution function, which is the regularized
incomplete beta function I_x(df/2, 1/2) evaluated by its continued fraction (modified Lentz). Both work for
any df > 0, including the non-integer degrees of freedom of Welch's test; ``t_quantile(0.975, 4)`` is
2.7764 and ``t_quantile(0.975, 1e9)`` is 1.9600.
"""
import math

# two-sided: every interval in the reports is a 95 % one
CONFIDENCE = 0.95


def _beta_continued_fraction(a, b, x, iterations=300, tiny=1e-300, tol=1e-15):
    """The continued fraction of the incomplete beta function (modified Lentz's method)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iterations + 1):
        m2 = 2 * m
        for aa in (m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))):
            d = 1.0 + aa * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + aa / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
            last = d * c
        if abs(last - 1.0) < tol:
            break
    return h


def incomplete_beta(a, b, x, one_minus_x=None):
    """The regularized incomplete beta function I_x(a, b) for a, b > 0 and 0 <= x <= 1.

    ``one_minus_x``, when given, is 1 - x computed without cancellation (x close to 1).
    """
    if not 0.0 <= x <= 1.0:
        raise ValueError(f"incomplete_beta: x must be in [0, 1], got {x}")
    y = 1.0 - x if one_minus_x is None else one_minus_x
    if x == 0.0 or y == 0.0:
        return 0.0 if x == 0.0 else 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y))
    if x < (a + 1.0) / (a + b + 2.0):  # the fraction converges fast on this side; use the symmetry otherwise
        return math.exp(log_front) * _beta_continued_fraction(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_continued_fraction(b, a, y) / b


def t_cdf(t, df):
    """P(T <= t) for Student's t distribution with ``df`` > 0 degrees of freedom."""
    if df <= 0:
        raise ValueError(f"t_cdf: degrees of freedom must be > 0, got {df}")
    if df > 1e7:  # the normal limit, off by < 1e-6 here, where lgamma's differences lose their digits
        return 0.5 * (1.0 + math.erf(t / math.sqrt(2.0)))
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p, df):
    """The t with P(T <= t) = p (0 < p < 1) for ``df`` > 0 degrees of freedom, to about 1e-10."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:  # df = 1 at p = 0.975 needs 12.7; tiny df needs more
        lo, hi = hi, hi * 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


def mean_std(values):
    """(mean, sample standard deviation with n - 1); std is None for one value, both None for none."""
    values = [float(v) for v in values]
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_interval(values, confidence=CONFIDENCE):
    """Mean, sample std and the two-sided t interval of the mean: ``{"n", "mean", "std", "low", "high"}``.

    With one value the std and the interval are None (one seed gives no spread).
    """
    mean, std = mean_std(values)
    n = len(values)
    if n < 2:
        return {"n": n, "mean": mean, "std": std, "low": None, "high": None}
    half = t_quantile(0.5 + confidence / 2.0, n - 1) * std / math.sqrt(n)
    return {"n": n, "mean": mean, "std": std, "low": mean - half, "high": mean + half}


def welch_difference(a, b, confidence=CONFIDENCE):
    """mean(a) - mean(b) with Welch's two-sided t interval (unequal variances).

    Returns ``{"diff", "low", "high", "df", "within_noise"}``; ``within_noise`` is True when the interval
    holds 0. Needs at least 2 values on each side, else the interval is None and ``within_noise`` None.
    When both sides have zero spread the interval is the difference itself.
    """
    ma, sa = mean_std(a)
    mb, sb = mean_std(b)
    if ma is None or mb is None:
        raise ValueError("welch_difference: both samples need at least one value")
    diff = ma - mb
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "low": None, "high": None, "df": None, "within_noise": None}
    va, vb = sa * sa / len(a), sb * sb / len(b)
    se2 = va + vb
    if se2 == 0.0:
        return {"diff": diff, "low": diff, "high": diff, "df": None, "within_noise": diff == 0.0}
    df = se2 * se2 / (va * va / (len(a) - 1) + vb * vb / (len(b) - 1))
    half = t_quantile(0.5 + confidence / 2.0, df) * math.sqrt(se2)
    low, high = diff - half, diff + half
    return {"diff": diff, "low": low, "high": high, "df": df, "within_noise": low <= 0.0 <= high}


def verdict(difference):
    """What a report prints beside a difference: "within noise" when its interval holds 0."""
    if difference.get("within_noise") is None:
        return "one seed, no interval"
    if difference["within_noise"]:
        return "within noise"
    return "higher" if difference["diff"] > 0 else "lower"
