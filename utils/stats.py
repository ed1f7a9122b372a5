"""Statistics of the report's cells: mean ± sample std and n, the difference of two methods'
means with a 95 % confidence interval, and a verdict that says what the interval supports.

The interval is Welch's (unequal variances, Welch-Satterthwaite degrees of freedom) when both
sides have two or more seeds. When one side has a single score, its variance cannot be
estimated: the interval then assumes the single score varies as the other side's runs do
(difference ± t(n-1) · s · sqrt(1 + 1/n), the prediction interval of one more run), and says
so. With one score on each side there is no interval.
"""
import math

from scipy import stats as _st

LEVEL = 0.95


def mean_std(values):
    """(mean, sample std or None when n < 2, n)."""
    vals = [float(v) for v in values if v is not None]
    n = len(vals)
    if n == 0:
        return None, None, 0
    mean = sum(vals) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1)) if n > 1 else None
    return mean, std, n


def difference(a, b, level=LEVEL):
    """Mean of ``a`` minus mean of ``b`` with a ``level`` confidence interval.

    Returns ``{"diff", "low", "high", "df", "method"}`` (``method``: ``welch``, ``one_run``
    when one side has a single score, ``none`` when no interval can be given; low/high None
    then), or None when a side is empty."""
    ma, sa, na = mean_std(a)
    mb, sb, nb = mean_std(b)
    if na == 0 or nb == 0:
        return None
    diff = ma - mb
    q = 0.5 + level / 2
    if na >= 2 and nb >= 2:
        va, vb = sa * sa / na, sb * sb / nb
        se = math.sqrt(va + vb)
        if se == 0:
            return {"diff": diff, "low": diff, "high": diff, "df": float(na + nb - 2), "method": "welch"}
        df = (va + vb) ** 2 / (va * va / (na - 1) + vb * vb / (nb - 1))
        half = _st.t.ppf(q, df) * se
        return {"diff": diff, "low": diff - half, "high": diff + half, "df": df, "method": "welch"}
    if na + nb >= 3:  # one side has one score: it varies as the other side's runs do
        s, n = (sb, nb) if na == 1 else (sa, na)
        half = _st.t.ppf(q, n - 1) * s * math.sqrt(1 + 1 / n)
        return {"diff": diff, "low": diff - half, "high": diff + half, "df": float(n - 1), "method": "one_run"}
    return {"diff": diff, "low": None, "high": None, "df": None, "method": "none"}


def verdict(d, what="dense"):
    """What an interval says of ``a`` against ``b`` (named ``what``): "above", "below" or "not
    distinguishable from"; "one run each, no interval" when there is none."""
    if d is None:
        return None
    if d["low"] is None:
        return "one run each, no interval"
    if d["low"] > 0:
        return f"above {what}"
    if d["high"] < 0:
        return f"below {what}"
    return f"not distinguishable from {what}"


def fmt_difference(d):
    """``+1.2 [-0.4, +2.8]`` (``+1.2`` without an interval)."""
    if d is None:
        return "—"
    if d["low"] is None:
        return f"{d['diff']:+.1f}"
    return f"{d['diff']:+.1f} [{d['low']:+.1f}, {d['high']:+.1f}]"
