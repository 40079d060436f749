"""Correlation between alignment and competence across models, with a bootstrap interval and a permutation p-value.

The unit of resampling is the model: with n models (points), the percentile bootstrap resamples models with
replacement (B times) and the permutation test shuffles one coordinate (K times). The p-value is two-sided,
p = (1 + #{|r_k| >= |r|}) / (K+1). With few models (n < 10) intervals are wide and the p-value is coarse (n!
orderings in all): report n alongside r.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from prh._validation import check_choice, check_float, check_int
from prh.errors import InputError

METHODS = ("spearman", "pearson")


@dataclass(frozen=True)
class CorrelationResult:
    """Correlation of two per-model quantities.

    Attributes
    ----------
    r : Pearson or Spearman correlation in [-1, 1].
    ci_low, ci_high : percentile bootstrap interval (models resampled with replacement) at ``level``.
    p_value : two-sided permutation p-value in [1/(K+1), 1].
    n : number of models.
    method : ``"spearman"`` or ``"pearson"``.
    level, B, K, seed : interval level, bootstrap replicates, permutations, seed.
    B_used : bootstrap replicates that were defined (resamples with a constant coordinate are skipped).
    """

    r: float
    ci_low: float
    ci_high: float
    p_value: float
    n: int
    method: str
    level: float
    B: int
    K: int
    seed: int
    B_used: int

    def to_dict(self) -> dict:
        """JSON-ready summary."""
        return dict(vars(self))


def _rows_corr(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pearson correlation of matching rows of two (R, n) arrays; NaN where a row is constant."""
    a = a - a.mean(axis=-1, keepdims=True)
    b = b - b.mean(axis=-1, keepdims=True)
    denom = np.sqrt((a * a).sum(axis=-1) * (b * b).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * b).sum(axis=-1) / denom
    r[denom <= 0] = np.nan
    return np.clip(r, -1.0, 1.0)


def _corr(a: np.ndarray, b: np.ndarray, method: str) -> np.ndarray:
    if method == "spearman":
        a, b = rankdata(a, axis=-1), rankdata(b, axis=-1)
    return _rows_corr(np.atleast_2d(a), np.atleast_2d(b))


def _as_vector(v: object, name: str) -> np.ndarray:
    try:
        arr = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"{name} must be a 1-D sequence of numbers (one per model): {err}") from err
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D (one value per model), got shape {arr.shape}.")
    if not np.all(np.isfinite(arr)):
        raise InputError(
            f"{name} contains NaN/Inf at positions {np.flatnonzero(~np.isfinite(arr)).tolist()}."
        )
    return arr


def correlation(
    x: object,
    y: object,
    method: str = "spearman",
    B: int = 1000,
    K: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> CorrelationResult:
    """Correlation between two per-model quantities (e.g. alignment to a reference model and competence).

    Parameters
    ----------
    x, y : 1-D sequences of n >= 3 finite numbers, x[i] and y[i] from the same model; neither constant.
    method : ``"spearman"`` (rank correlation, average ranks for ties; default) or ``"pearson"``.
    B : bootstrap replicates (models resampled with replacement) for the percentile interval.
    K : random permutations of y for the two-sided p-value.
    level : interval level.
    seed : seed of a ``numpy.random.Generator``; deterministic.

    Returns
    -------
    :class:`CorrelationResult` (r, ci_low, ci_high, p_value, n, ...).
    """
    method = check_choice(method, "method", METHODS)
    a, b = _as_vector(x, "x"), _as_vector(y, "y")
    if a.size != b.size:
        raise InputError(f"x and y must have one value per model each: len(x)={a.size}, len(y)={b.size}.")
    n = a.size
    if n < 3:
        raise InputError(f"a correlation needs at least 3 models, got n={n}.")
    for name, v in (("x", a), ("y", b)):
        if np.all(v == v[0]):
            raise InputError(f"{name} is constant across models; the correlation is undefined.")
    B = check_int(B, "B", minimum=1, hint="bootstrap resamples")
    K = check_int(K, "K", minimum=1, hint="permutations")
    level = check_float(level, "level", 0.0, 1.0, inclusive=(False, False), hint="strictly between 0 and 1")
    seed = check_int(seed, "seed")

    r = float(_corr(a, b, method)[0])
    rng = np.random.default_rng(int(seed))
    idx = rng.integers(0, n, size=(int(B), n))
    boot = _corr(a[idx], b[idx], method)
    boot = boot[np.isfinite(boot)]
    if boot.size < max(2, int(B) // 2):
        raise InputError(
            f"only {boot.size} of {B} bootstrap resamples of the n={n} models had a defined correlation "
            "(most resamples repeat a single value); more models are needed for an interval."
        )
    ci_low, ci_high = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2])
    perm_y = rng.permuted(np.broadcast_to(b, (int(K), n)), axis=1)
    null = _corr(np.broadcast_to(a, (int(K), n)), perm_y, method)
    tol = 1e-12
    p = (1 + int(np.count_nonzero(np.abs(null) >= abs(r) - tol))) / (int(K) + 1)
    return CorrelationResult(
        r=r,
        ci_low=float(ci_low),
        ci_high=float(ci_high),
        p_value=float(p),
        n=int(n),
        method=method,
        level=float(level),
        B=int(B),
        K=int(K),
        seed=int(seed),
        B_used=int(boot.size),
    )
