"""Confidence intervals and tests for comparing binary classifiers, in numpy and the stdlib only.

Why here: the runtime reports how sure a measured rate is (on the device and on the host alike),
and a Raspberry Pi has numpy but not scipy or statsmodels. Everything below is a published
method, named in its docstring with the reference, and checked against a reference
implementation or the paper's own numbers in tests/test_stats.py.

Conventions: a proportion's point estimate is ``successes / n``; a difference is *new minus
old*; label 1 is the positive class and higher scores mean "more positive" (as in
:mod:`runtime.metrics`). Nothing here raises for a split that lacks a class: rates without a
denominator come back as NaN, which :meth:`Interval.to_dict` writes as ``None``.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from .errors import DataError

Z95: float = 1.959963984540054  # two-sided 95% normal quantile, Phi^-1(0.975)

_NAN = float("nan")


@dataclass(frozen=True)
class Interval:
    """A point estimate with its confidence limits and the method that produced them."""

    value: float
    low: float
    high: float
    method: str

    def to_dict(self) -> dict[str, float | str | None]:
        """JSON-ready: plain Python floats, and ``None`` for NaN (JSON has no NaN)."""
        out: dict[str, float | str | None] = {}
        for key in ("value", "low", "high"):
            v = float(getattr(self, key))
            out[key] = None if math.isnan(v) else v
        out["method"] = self.method
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Interval:
        """The inverse of :meth:`to_dict` (``None`` back to NaN); keys beyond the four are ignored."""
        def number(key: str) -> float:
            return _NAN if raw[key] is None else float(raw[key])

        return cls(number("value"), number("low"), number("high"), str(raw["method"]))


# --------------------------------------------------------------------------- input checks

def _count(name: str, value: object) -> int:
    """An integer count >= 0; numpy integers are accepted, floats and negatives are not."""
    try:
        v = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise DataError(f"{name} must be an integer count; got {value!r}") from None
    if v < 0:
        raise DataError(f"{name} must be a count >= 0; got {v}")
    return v


def _z(confidence: float) -> float:
    """Two-sided normal quantile for a confidence level in (0, 1)."""
    c = float(confidence)
    if not 0.0 < c < 1.0:  # also refuses NaN
        raise DataError(f"confidence must be in (0, 1), e.g. 0.95; got {confidence!r}")
    if c == 0.95:
        return Z95  # the one constant everyone quotes, to the last bit
    return NormalDist().inv_cdf(0.5 + c / 2.0)


def _nan_interval(method: str) -> Interval:
    return Interval(_NAN, _NAN, _NAN, method)


# --------------------------------------------------------------------------- single proportions

def wilson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Wilson (1927) score interval for a binomial proportion.

    The default for rates: unlike the Wald interval it never leaves [0, 1] and keeps close to
    nominal coverage for small n or rates near 0 and 1 (Newcombe 1998, Stat Med 17:857).
    ``n == 0`` gives a NaN interval, not an error: a split may lack a class.
    """
    x, n = _count("successes", successes), _count("n", n)
    if x > n:
        raise DataError(f"successes must be <= n; got successes={x}, n={n}")
    z = _z(confidence)
    if n == 0:
        return _nan_interval("wilson")
    p = x / n
    z2 = z * z
    denom = 1.0 + z2 / n
    center = (p + z2 / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z2 / (4.0 * n * n)) / denom
    # At 0 and n the limits are exactly 0 and 1; say so rather than leave a rounding residue.
    low = 0.0 if x == 0 else max(0.0, center - half)
    high = 1.0 if x == n else min(1.0, center + half)
    return Interval(p, low, high, "wilson")


def _log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz; Press et al., Numerical Recipes 6.4).

    It converges in O(sqrt(max(a, b))) terms for x below the mean, a few hundred for n = 100,000.
    """
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-16:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) = P(Beta(a, b) <= x), for a, b > 0.

    Equals the binomial tail P(X >= a | n = a + b - 1, p = x) for integer a, b: this is how the
    exact methods (Clopper-Pearson; McNemar beyond 10,000 pairs) get binomial tails without summing n terms.
    """
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = a * math.log(x) + b * math.log1p(-x) - _log_beta(a, b)
    # The fraction converges fast only below the mean; above it use I_x(a, b) = 1 - I_{1-x}(b, a).
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1.0 - x) / b


def _beta_quantile(a: float, b: float, target: float, guess: float) -> float:
    """The q with I_q(a, b) == target: Newton's method kept inside a shrinking bisection bracket.

    Newton converges in a handful of steps from a nearby guess (the Wilson limit); the bracket
    makes it safe where the density is tiny or the guess is poor. Accurate to about 1e-15.
    """
    lo, hi = 0.0, 1.0
    q = min(max(guess, 1e-300), 1.0 - 1e-16)
    log_b = _log_beta(a, b)
    for _ in range(400):
        f = _betainc(a, b, q) - target
        if f == 0.0:
            return q
        if f > 0.0:
            hi = q
        else:
            lo = q
        density = math.exp((a - 1.0) * math.log(q) + (b - 1.0) * math.log1p(-q) - log_b)
        step = f / density if density > 0.0 else math.inf
        new = q - step
        if not lo < new < hi:  # Newton left the bracket: bisect instead,
            # geometrically while the bracket spans orders of magnitude (tiny lower limits).
            if lo == 0.0:
                new = 0.25 * hi
            elif hi > 4.0 * lo:
                new = math.sqrt(lo * hi)
            else:
                new = 0.5 * (lo + hi)
        if abs(new - q) <= 1e-15 * q or hi - lo <= 4e-16 * hi:
            return new
        q = new
    return q


def clopper_pearson(successes: int, n: int, confidence: float = 0.95) -> Interval:
    """Clopper & Pearson (1934) exact interval for a binomial proportion.

    Conservative (coverage >= nominal for every true rate), which is what a claim like "at
    least 95% sensitivity" needs. The limits are beta quantiles (low = B^-1(alpha/2; x, n-x+1),
    high = B^-1(1-alpha/2; x+1, n-x)), found by inverting the regularized incomplete beta
    function without scipy. ``n == 0`` gives a NaN interval.
    """
    x, n = _count("successes", successes), _count("n", n)
    if x > n:
        raise DataError(f"successes must be <= n; got successes={x}, n={n}")
    _z(confidence)  # validates it; the exact method needs only the tail probability
    if n == 0:
        return _nan_interval("clopper-pearson")
    tail = (1.0 - float(confidence)) / 2.0
    start = wilson(x, n, confidence)
    low = 0.0 if x == 0 else _beta_quantile(x, n - x + 1, tail, start.low)
    # Upper limit by symmetry, I_p(x+1, n-x) = 1 - I_{1-p}(n-x, x+1): solving for a small
    # lower tail keeps the precision that 1 - (something near 1) would lose.
    high = 1.0 if x == n else 1.0 - _beta_quantile(n - x, x + 1, tail, 1.0 - start.high)
    return Interval(x / n, low, high, "clopper-pearson")


def one_image(n: int) -> float:
    """What one image moves a rate measured on ``n`` images: 1/n (NaN for n == 0).

    A difference smaller than this cannot be told from a single different decision.
    """
    n = _count("n", n)
    return 1.0 / n if n else _NAN


# --------------------------------------------------------------------------- paired proportions

def paired_difference(a: int, b: int, c: int, d: int, confidence: float = 0.95) -> Interval:
    """Difference of two paired proportions, p_new - p_old, by Newcombe (1998) method 10.

    The 2x2 table of the n = a+b+c+d pairs (the same images, old and new decisions):
    ``a`` both positive, ``b`` old positive & new negative, ``c`` old negative & new positive,
    ``d`` both negative; p_old = (a+b)/n, p_new = (a+c)/n, value = (c-b)/n.

    Method 10 (Newcombe RG, 1998, "Improved confidence intervals for the difference between
    binomial proportions based on paired data", Stat Med 17:2635-2650) combines the Wilson
    limits (no continuity correction) of the two marginal rates, square-and-add, with the
    correlation phi of the pairs; phi's numerator ad - bc is shrunk by n/2 towards 0 when
    positive (Newcombe's correction), and phi = 0 when a margin is empty. It keeps close to
    nominal coverage with few discordant pairs, where the Wald interval collapses to a point.
    ``n == 0`` gives a NaN interval.
    """
    a, b, c, d = (_count(k, v) for k, v in (("a", a), ("b", b), ("c", c), ("d", d)))
    _z(confidence)
    n = a + b + c + d
    if n == 0:
        return _nan_interval("newcombe-paired")
    p_new, p_old = (a + c) / n, (a + b) / n
    w_new, w_old = wilson(a + c, n, confidence), wilson(a + b, n, confidence)
    product = (a + b) * (c + d) * (a + c) * (b + d)  # exact integers: no overflow, no rounding
    if product == 0:
        phi = 0.0
    else:
        num = a * d - b * c
        if num > n / 2:
            num = num - n / 2
        elif num >= 0:
            num = 0
        phi = num / math.sqrt(product)
    value = (c - b) / n
    dl_new, du_new = p_new - w_new.low, w_new.high - p_new
    dl_old, du_old = p_old - w_old.low, w_old.high - p_old
    # phi <= 1 keeps the radicands >= (x - y)^2 >= 0; max() only absorbs rounding.
    low = value - math.sqrt(max(0.0, dl_new**2 - 2.0 * phi * dl_new * du_old + du_old**2))
    high = value + math.sqrt(max(0.0, du_new**2 - 2.0 * phi * du_new * dl_old + dl_old**2))
    return Interval(value, max(-1.0, low), min(1.0, high), "newcombe-paired")


def mcnemar_exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar test of p_old == p_new from the discordant pairs ``b`` and ``c``.

    Under the null each discordant pair is a fair coin (McNemar 1947; exact binomial form):
    p = min(1, 2 * P(X <= min(b, c))), X ~ Binomial(b + c, 1/2); 1.0 when b + c == 0.
    """
    b, c = _count("b", b), _count("c", c)
    k, m = min(b, c), b + c
    if m == 0 or 2 * k >= m:  # b == c: the doubled tail reaches 1
        return 1.0
    if m <= 10_000:
        # Exactly, in integers: sum_{i<=k} C(m, i) / 2^m, correctly rounded by int / int (< 15 ms).
        term = total = 1
        for i in range(k):
            term = term * (m - i) // (i + 1)
            total += term
        return min(1.0, 2 * total / (1 << m))
    # Beyond that the integers grow slow; P(X <= k) = I_{1/2}(m-k, k+1), relative error ~1e-10.
    return min(1.0, 2.0 * _betainc(m - k, k + 1, 0.5))


# --------------------------------------------------------------------------- AUC (DeLong)

def _labels_and_scores(y_true: np.ndarray, *scores: np.ndarray) -> tuple[np.ndarray, list[np.ndarray]]:
    y = np.asarray(y_true).reshape(-1)
    rows = [np.asarray(s, dtype=np.float64).reshape(-1) for s in scores]
    for i, s in enumerate(rows):
        if s.shape != y.shape:
            raise DataError(f"labels and scores differ in length: {y.size} labels vs {s.size} scores (set {i + 1})")
        if not np.isfinite(s).all():
            raise DataError(f"scores (set {i + 1}) contain NaN or inf; expected finite model outputs")
    if not np.isin(y, (0, 1)).all():
        raise DataError(f"labels must be 0/1; found {np.unique(y)[:5].tolist()}")
    y = y.astype(np.int64)
    m, n = int(y.sum()), int(y.size - y.sum())
    if m < 2 or n < 2:
        raise DataError(f"the DeLong variance needs at least 2 of each class; got {m} positive and {n} negative")
    return y, rows


def _midranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks with ties given the mean of the ranks they span."""
    _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    ends = np.cumsum(counts)
    return (ends - (counts - 1) / 2.0)[inverse]


def _delong(y: np.ndarray, rows: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """AUCs and their covariance matrix by DeLong, DeLong & Clarke-Pearson (1988).

    Computed with the midrank algorithm of Sun & Xu (2014, IEEE Signal Processing Letters
    21:1389): each positive's structural component V10 (share of negatives it outscores, ties
    half) and each negative's V01 come from three rankings, O(N log N) instead of O(m n) pairs.
    cov = S10 / m + S01 / n with S the sample covariances (ddof=1) of the components.
    """
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())
    v10 = np.empty((len(rows), m))
    v01 = np.empty((len(rows), n))
    for k, s in enumerate(rows):
        tz = _midranks(s)
        v10[k] = (tz[pos] - _midranks(s[pos])) / n
        v01[k] = 1.0 - (tz[neg] - _midranks(s[neg])) / m
    aucs = v10.mean(axis=1)
    cov = np.atleast_2d(np.cov(v10)) / m + np.atleast_2d(np.cov(v01)) / n
    return aucs, cov


def auc_interval(y_true: np.ndarray, scores: np.ndarray, confidence: float = 0.95) -> Interval:
    """ROC AUC (ties count half) with the DeLong et al. (1988) standard error.

    Interval: AUC +- z * se, clipped to [0, 1] (as pROC's ``ci.auc``). Needs at least two
    images of each class (the variance is a sample variance per class), else DataError.
    """
    z = _z(confidence)
    y, rows = _labels_and_scores(y_true, scores)
    aucs, cov = _delong(y, rows)
    auc, se = float(aucs[0]), math.sqrt(max(0.0, float(cov[0, 0])))
    return Interval(auc, max(0.0, auc - z * se), min(1.0, auc + z * se), "delong")


def paired_auc_difference(y_true: np.ndarray, scores_old: np.ndarray, scores_new: np.ndarray,
                          confidence: float = 0.95) -> tuple[Interval, float]:
    """AUC(new) - AUC(old) on the same images, with DeLong's paired variance and z test.

    var = var(new) + var(old) - 2 cov(new, old), all from the structural components (DeLong,
    DeLong & Clarke-Pearson 1988, Biometrics 44:837): the positive covariance of two models
    scored on the same images is what makes the paired comparison far tighter than two
    separate intervals. Returns (interval clipped to [-1, 1], two-sided p of z = value / se).
    se == 0 (e.g. identical scores) gives the interval [value, value] and p = 1.0 when the
    value is 0 (p = 0.0 for the degenerate case of a nonzero difference with no variance).
    """
    z = _z(confidence)
    y, rows = _labels_and_scores(y_true, scores_old, scores_new)
    aucs, cov = _delong(y, rows)
    value = float(aucs[1] - aucs[0])
    var = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    se = math.sqrt(max(0.0, var))
    if se == 0.0:
        return Interval(value, value, value, "delong-paired"), (1.0 if value == 0.0 else 0.0)
    p = math.erfc(abs(value / se) / math.sqrt(2.0))  # 2 * (1 - Phi(|z|)) without cancellation
    return Interval(value, max(-1.0, value - z * se), min(1.0, value + z * se), "delong-paired"), p


# --------------------------------------------------------------------------- predictive values

def _expit(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


def _bayes(num: float, other: float) -> float:
    """num / (num + other), NaN when both are 0 (no decision of that kind can occur)."""
    total = num + other
    return num / total if total > 0 else _NAN


def predictive_values(tp: int, fn: int, tn: int, fp: int, prevalence: float | None = None,
                      confidence: float = 0.95) -> tuple[Interval, Interval]:
    """(PPV, NPV) at a stated prevalence, with Mercaldo, Lau & Zhou (2007) logit intervals.

    Why a stated prevalence: a test split's class balance is set by whoever built it, not by
    the population a device will see, so PPV and NPV are computed by Bayes' rule from
    sensitivity tp/(tp+fn) and specificity tn/(tn+fp):
    PPV = se p / (se p + (1 - sp)(1 - p)), NPV = sp (1 - p) / (sp (1 - p) + (1 - se) p).
    ``prevalence=None`` uses the sample's own (tp+fn)/n; the point values are then exactly
    tp/(tp+fp) and tn/(tn+fn).

    Intervals (Mercaldo ND, Lau KF, Zhou XH, 2007, "Confidence intervals for predictive values
    with an emphasis to case-control studies", Stat Med 26:2170-2183): the delta method on
    logit(PPV) = log(se p / ((1 - sp)(1 - p))), whose variance (1 - se)/(se n1) + sp/((1 - sp) n0)
    comes from the sensitivity and specificity alone (n1 = tp+fn, n0 = tn+fp; prevalence is
    taken as known, also when it is the sample's own, i.e. class counts fixed by design);
    likewise for NPV. The standard logit interval (their Section 2.2, recommended) is used
    when all four cells are > 0; when any cell is 0 it is undefined and their *adjusted* logit
    interval is used instead (method "adjusted logit (Mercaldo 2007)"): se and sp replaced by
    (tp + z^2/2)/(n1 + z^2) and (tn + z^2/2)/(n0 + z^2), and n1, n0 by n1 + z^2, n0 + z^2, in both
    the estimate and the variance (their Table II) - the rule of R's bdpv::BDtest. With a zero
    cell the point value (plain Bayes, e.g. PPV = 1 when fp = 0) can lie just outside that
    adjusted interval, which is pulled away from 0 and 1 on purpose.
    A class with no images gives NaN intervals.
    """
    tp, fn, tn, fp = (_count(k, v) for k, v in (("tp", tp), ("fn", fn), ("tn", tn), ("fp", fp)))
    z = _z(confidence)
    if prevalence is not None:
        prev = float(prevalence)
        if not 0.0 < prev < 1.0:
            raise DataError(f"prevalence must be in (0, 1), exclusive; got {prevalence!r}")
    n1, n0 = tp + fn, tn + fp
    adjusted = min(tp, fn, tn, fp) == 0
    method = "adjusted logit (Mercaldo 2007)" if adjusted else "logit (Mercaldo 2007)"
    if n1 == 0 or n0 == 0:
        return _nan_interval(method), _nan_interval(method)
    if prevalence is None:
        prev = n1 / (n1 + n0)
        ppv, npv = _bayes(tp, fp), _bayes(tn, fn)  # what Bayes' rule reduces to, without rounding
    else:
        se, sp = tp / n1, tn / n0
        ppv, npv = _bayes(se * prev, (1.0 - sp) * (1.0 - prev)), _bayes(sp * (1.0 - prev), (1.0 - se) * prev)
    if adjusted:
        z2 = z * z
        m1, m0 = n1 + z2, n0 + z2
        se_, sp_ = (tp + z2 / 2.0) / m1, (tn + z2 / 2.0) / m0
    else:
        m1, m0 = n1, n0
        se_, sp_ = tp / n1, tn / n0
    logit_prev = math.log(prev) - math.log1p(-prev)
    lppv = math.log(se_) - math.log1p(-sp_) + logit_prev
    lnpv = math.log(sp_) - math.log1p(-se_) - logit_prev
    half_ppv = z * math.sqrt((1.0 - se_) / (se_ * m1) + sp_ / ((1.0 - sp_) * m0))
    half_npv = z * math.sqrt(se_ / ((1.0 - se_) * m1) + (1.0 - sp_) / (sp_ * m0))
    return (Interval(ppv, _expit(lppv - half_ppv), _expit(lppv + half_ppv), method),
            Interval(npv, _expit(lnpv - half_npv), _expit(lnpv + half_npv), method))


# --------------------------------------------------------------------------- study size

def noninferiority_sample_size(margin: float, discordance: float, true_difference: float = 0.0,
                               alpha: float = 0.025, power: float = 0.8) -> int:
    """Images per class so that a paired rate loss is shown to stay under ``margin``.

    Setting: old and new decisions on the same n images of a class (e.g. sensitivity on the
    positives); they disagree on a fraction ``discordance`` = psi of them, and the true
    difference p_new - p_old is ``true_difference`` = delta (0: no real change; negative: a
    real loss). Non-inferiority is shown when the one-sided (1 - alpha) bound of the loss,
    p_old - p_new, is below ``margin`` = D, i.e. the lower bound of p_new - p_old is above -D.

    Formula (score test for matched pairs: Nam 1997, Biometrics 53:1422; Liu, Hsueh, Hsieh &
    Chen 2002, Stat Med 21:231):

        n = (z_{1-alpha} sigma_0 + z_{power} sigma_1)^2 / (delta + D)^2

    with sigma_1^2 = psi - delta^2, the per-pair variance of the difference under the truth,
    and sigma_0^2 = psi0 - D^2 its variance at the null boundary (difference -D), where
    psi0 = 2 p01 + D and p01 (the share where only the new model is positive) is the
    restricted maximum-likelihood value, the root of 2 x^2 - B x - p01_true D (1 - D) = 0,
    B = psi - D (2 + delta), p01_true = (psi + delta) / 2. Rounded up.
    """
    D, psi, delta = float(margin), float(discordance), float(true_difference)
    if not 0.0 < D < 1.0:
        raise DataError(f"margin must be in (0, 1), e.g. 0.02 for two points of a rate; got {margin!r}")
    if not 0.0 <= psi <= 1.0:
        raise DataError(f"discordance must be a fraction in [0, 1]; got {discordance!r}")
    if not abs(delta) <= psi:
        raise DataError(f"|true_difference| cannot exceed discordance (only disagreements move a paired rate); "
                        f"got true_difference={true_difference!r}, discordance={discordance!r}")
    if not delta + D > 0.0:
        raise DataError(f"true_difference must be above -margin, or no study size can show non-inferiority; "
                        f"got true_difference={true_difference!r}, margin={margin!r}")
    if not 0.0 < float(alpha) < 0.5:
        raise DataError(f"alpha must be in (0, 0.5), e.g. 0.025; got {alpha!r}")
    if not 0.0 < float(power) < 1.0:
        raise DataError(f"power must be in (0, 1), e.g. 0.8; got {power!r}")
    z_a, z_b = NormalDist().inv_cdf(1.0 - float(alpha)), NormalDist().inv_cdf(float(power))
    p01 = (psi + delta) / 2.0
    bb = psi - D * (2.0 + delta)
    x = (bb + math.sqrt(bb * bb + 8.0 * p01 * D * (1.0 - D))) / 4.0
    sigma0 = math.sqrt(max(0.0, 2.0 * x + D - D * D))
    sigma1 = math.sqrt(max(0.0, psi - delta * delta))
    n = (z_a * sigma0 + z_b * sigma1) ** 2 / (delta + D) ** 2
    return max(1, math.ceil(n - 1e-9))  # the tolerance keeps an exact integer from rounding up


# --------------------------------------------------------------------------- latency

BOOTSTRAP_RESAMPLES = 2_000  # the 95% limits then move by a few percent of the interval's width from seed to seed
BOOTSTRAP_BATCH = 200  # resamples drawn per step: memory stays ~ 200 x n indices, whatever the resample count


def _latencies(name: str, values: object) -> np.ndarray:
    """A non-empty 1-D float64 array of finite, positive milliseconds (a ratio of medians needs both > 0)."""
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise DataError(f"{name}: no latencies; expected at least one timed call")
    if not np.isfinite(x).all():
        raise DataError(f"{name}: contains NaN or inf; expected finite latencies")
    if not (x > 0).all():
        raise DataError(f"{name}: contains a latency <= 0 ({float(x.min())!r}); expected positive durations")
    return x


def latency_ratio(a_ms: object, b_ms: object, confidence: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                  seed: int = 0) -> Interval:
    """Is artifact A slower than B, in one process each? median(A) / median(B) over their calls, with a two-sided
    percentile bootstrap interval.

    Why a ratio of medians: a latency sample is skewed (a few slow calls from the scheduler or a
    cache miss), the median ignores those, and a ratio reads the same on a Pi and on a laptop.
    An interval entirely above 1 says A is slower in this run, entirely below 1 that it is faster.

    Method: the percentile interval of Efron & Tibshirani (1993, *An Introduction to the
    Bootstrap*, Chapman & Hall, ch. 13): each sample is resampled with replacement on its own
    (the samples are not paired), the ratio of medians is computed on each of ``resamples``
    pairs of resamples, and the limits are the (1 - c)/2 and (1 + c)/2 quantiles (numpy's linear
    interpolation) of those ratios. The generator is numpy's ``default_rng(seed)``, drawing the
    indices of A then of B for every batch of BOOTSTRAP_BATCH resamples, the order of
    ``scipy.stats.bootstrap(..., method="percentile", batch=BOOTSTRAP_BATCH)``: the same seed gives
    the same interval as scipy, and the same answer on every call.

    Assumes: the calls within each sample are independent draws from one distribution (as
    :func:`runtime.timing.time_calls` takes them). It sees only call-to-call variation: fresh
    processes of one file differ by more than that (thread placement, memory layout, frequency),
    so with several processes of each file use :func:`process_latency_ratio`. Percentile intervals
    of a median cover less than nominal for very small samples (under ~20 calls).
    """
    a, b = _latencies("a_ms", a_ms), _latencies("b_ms", b_ms)
    _z(confidence)  # validates it; the bootstrap needs only the tail probability
    if isinstance(resamples, bool) or not isinstance(resamples, (int, np.integer)) or resamples < 1:
        raise DataError(f"resamples must be an integer of 1 or more, e.g. {BOOTSTRAP_RESAMPLES}; got {resamples!r}")
    rng = np.random.default_rng(seed)
    ratios = np.empty(int(resamples), dtype=np.float64)
    for start in range(0, int(resamples), BOOTSTRAP_BATCH):
        k = min(BOOTSTRAP_BATCH, int(resamples) - start)
        ia = rng.integers(0, a.size, (k, a.size))
        ib = rng.integers(0, b.size, (k, b.size))
        ratios[start:start + k] = np.median(a[ia], axis=-1) / np.median(b[ib], axis=-1)
    tail = (1.0 - float(confidence)) / 2.0
    low, high = np.percentile(ratios, [100.0 * tail, 100.0 * (1.0 - tail)])
    value = float(np.median(a) / np.median(b))
    return Interval(value, float(low), float(high), "percentile bootstrap (Efron & Tibshirani 1993)")


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t with ``df`` (> 0, not necessarily whole) degrees of freedom.

    From P(|T| > t) = I_{df/(df + t^2)}(df/2, 1/2) and the inverse of the regularized incomplete
    beta function (:func:`_beta_quantile`); checked against scipy.stats.t.ppf in tests/test_stats.py.
    """
    if not 0.0 < p < 1.0 or not df > 0.0:
        raise DataError(f"t quantile: p must be in (0, 1) and df > 0; got p={p!r}, df={df!r}")
    if p == 0.5:
        return 0.0
    tail = 2.0 * min(p, 1.0 - p)  # two-sided tail of |T|
    x = _beta_quantile(df / 2.0, 0.5, tail, tail)
    t = math.sqrt(df * (1.0 - x) / x)
    return t if p > 0.5 else -t


def process_latency_ratio(a_p50_ms: object, b_p50_ms: object, confidence: float = 0.95) -> Interval:
    """Is artifact A slower than B, each timed in several fresh processes? The ratio of the geometric means of each
    process's p50, with Welch's t interval on their logs (Welch 1947, Biometrika 34:28).

    Each fresh process is one measurement: 6 processes of one 75x75 file, 30 calls each, differed in p50
    by up to 1.79x (docs/benchmarks.md), far beyond what the calls within one process show, so an interval
    from calls alone (:func:`latency_ratio`) calls a file slower than itself. Logs, because latencies
    scale: the ratio is what travels between machines, and process-to-process spread is roughly a
    constant factor. With few processes the t interval is wide, as it should be; it is exact if the log
    p50s are normal, and it needs at least two processes of each.
    """
    a, b = np.log(_latencies("a_p50_ms", a_p50_ms)), np.log(_latencies("b_p50_ms", b_p50_ms))
    _z(confidence)  # validates it
    if a.size < 2 or b.size < 2:
        raise DataError(f"process_latency_ratio: {a.size} and {b.size} processes; expected at least 2 of each "
                        "(one process says nothing of how processes differ: use latency_ratio on its calls)")
    diff = float(a.mean() - b.mean())
    va, vb = float(a.var(ddof=1)) / a.size, float(b.var(ddof=1)) / b.size
    se = math.sqrt(va + vb)
    method = "Welch t on log p50 per process (Welch 1947)"
    if se == 0.0:
        return Interval(math.exp(diff), math.exp(diff), math.exp(diff), method)
    df = (va + vb) ** 2 / (va**2 / (a.size - 1) + vb**2 / (b.size - 1))
    half = t_quantile(0.5 + float(confidence) / 2.0, df) * se
    return Interval(math.exp(diff), math.exp(diff - half), math.exp(diff + half), method)
