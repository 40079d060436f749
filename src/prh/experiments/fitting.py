"""A saturating curve through alignment-vs-count points: s(n) = s_inf - (s_inf - s_1) * n^(-exponent).

``s_1`` is the value at n = 1, ``s_inf`` the asymptote (what averaging infinitely many views/captions would reach)
and ``exponent`` > 0 how fast it is approached (a power law, the form of test-time scaling curves). Fitted by
least squares (``scipy.optimize.curve_fit``, bounded: exponent in [0.001, 10], s_inf within two ranges of the
data, s_1 within one); R² = 1 - SS_res / SS_tot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from prh.errors import InputError


@dataclass(frozen=True)
class SaturatingFit:
    """Parameters of s(n) = s_inf - (s_inf - s_1) n^(-exponent) and the fit's R² (NaN when it cannot be fitted)."""

    s_inf: float
    s_1: float
    exponent: float
    r2: float
    points: int

    def __call__(self, n: np.ndarray | float) -> np.ndarray:
        return saturating(np.asarray(n, dtype=np.float64), self.s_inf, self.s_1, self.exponent)

    def to_dict(self) -> dict:
        return dict(vars(self))


def saturating(n: np.ndarray, s_inf: float, s_1: float, exponent: float) -> np.ndarray:
    """s(n) = s_inf - (s_inf - s_1) * n^(-exponent)."""
    return s_inf - (s_inf - s_1) * np.power(n, -exponent)


def fit_saturating(counts: object, scores: object) -> SaturatingFit:
    """Least-squares fit of :func:`saturating` to points (n_i >= 1, s_i).

    Needs at least 4 points with at least 2 distinct counts; fewer give a fit of NaNs (3 parameters would
    interpolate 3 points, R² = 1 meaning nothing). A flat curve gives exponent NaN and R² NaN.

    Raises
    ------
    InputError
        Counts below 1, non-finite values, or lengths that differ.
    """
    from scipy.optimize import curve_fit

    n = np.asarray(counts, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if n.shape != s.shape:
        raise InputError(f"counts ({n.size}) and scores ({s.size}) must have the same length.")
    if not (np.isfinite(n).all() and np.isfinite(s).all()):
        raise InputError("counts and scores must be finite numbers.")
    if n.size and n.min() < 1:
        raise InputError(f"counts must be >= 1 (a number of views or captions), got {n.min()}.")
    nan = SaturatingFit(float("nan"), float("nan"), float("nan"), float("nan"), int(n.size))
    if n.size < 4 or np.unique(n).size < 2:
        return nan
    ss_tot = float(((s - s.mean()) ** 2).sum())
    if ss_tot == 0.0:
        return SaturatingFit(float(s[0]), float(s[0]), float("nan"), float("nan"), int(n.size))
    span = float(s.max() - s.min())
    first = float(s[np.argmin(n)])
    start = (float(s[np.argmax(n)]) + 0.1 * span * np.sign(s[np.argmax(n)] - first), first, 1.0)
    pad = max(span, 1e-6)
    lo = (float(s.min()) - 2 * pad, float(s.min()) - pad, 1e-3)
    hi = (float(s.max()) + 2 * pad, float(s.max()) + pad, 10.0)
    start = tuple(float(np.clip(v, a, b)) for v, a, b in zip(start, lo, hi))
    try:
        params, _ = curve_fit(saturating, n, s, p0=start, bounds=(lo, hi), maxfev=20000)
    except (RuntimeError, ValueError):
        return nan
    residual = s - saturating(n, *params)
    r2 = 1.0 - float((residual**2).sum()) / ss_tot
    return SaturatingFit(float(params[0]), float(params[1]), float(params[2]), r2, int(n.size))
