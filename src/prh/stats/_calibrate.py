"""Permutation-null calibration of alignment scores: threshold τ, p-value and calibrated score.

Under the null hypothesis "X and Y are unrelated" the rows of Y are exchangeable with respect to X, so scores of
X against row-permuted copies of Y are draws from the null distribution of the score. With K random permutations
giving null scores s_1..s_K and the observed score s_obs:

* τ = the ⌈(1−α)(K+1)⌉-th smallest of {s_obs} ∪ {s_1..s_K} (the critical value of a level-α test);
* p = (1 + #{s_k ≥ s_obs}) / (K+1) (valid: P(p ≤ u) ≤ u under the null for every u, ties included);
* calibrated = clip((s_obs − τ) / (s_max − τ), 0, 1) for bounded metrics (s_max = 1), max(s_obs − τ, 0) otherwise.

``calibrated > 0`` exactly when ``p ≤ α``. For a layer sweep (:func:`calibrate_sweep`) every permutation is applied
to all layers of Y at once and the statistic is an aggregate of the whole grid (max by default), so the
selection of the best layer pair is part of the null: τ and p are corrected for the number of layer pairs tried.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
import torch

from prh._sweep import LayerCaches, Sweep, as_layers, cache_layers
from prh._validation import check_float, check_int, suggest
from prh.errors import InputError
from prh.memory import require_memory
from prh.metrics import DEFAULT_METRIC
from prh.metrics import spec as metric_spec
from prh.stats.null_grid import make_engine
from prh.stats.permute import random_permutations

#: Aggregates of a layer grid that :func:`calibrate_sweep` accepts.
AGGREGATES = ("max", "mean", "row_max_mean")

#: Relative tolerance under which a null score counts as a tie with the observed score (float rounding).
TIE_RTOL = 1e-12


@dataclass(frozen=True, eq=False)
class CalibrationResult:
    """A calibrated alignment score.

    Attributes
    ----------
    score : observed statistic (the pair's score, or the aggregate of the layer grid, e.g. its max).
    tau : τ, the level-α critical value of the permutation null.
    p_value : permutation p-value in [1/(K+1), 1].
    calibrated : calibrated score in [0, 1] (bounded metrics) or [0, inf); 0 unless ``p_value <= alpha``.
    K : number of permutations.
    alpha : significance level.
    null : (K,) float64 null statistics, in permutation order.
    metric : metric name.
    params : metric options used (e.g. ``{"k": 10}``).
    aggregate : how the layer grid was reduced (``"max"``, ``"mean"``, ``"row_max_mean"``).
    sweep : the observed :class:`~prh._sweep.Sweep` (grid, best, best_layers).
    null_grids : (K, Lx, Ly) float64 null grids, or None unless ``keep_null_grids=True``.
    seed : seed of the permutations.
    """

    score: float
    tau: float
    p_value: float
    calibrated: float
    K: int
    alpha: float
    null: np.ndarray
    metric: str
    params: dict = field(default_factory=dict)
    aggregate: str = "max"
    sweep: Sweep | None = None
    null_grids: np.ndarray | None = None
    seed: int = 0

    @property
    def significant(self) -> bool:
        """Whether the score is significant at level ``alpha`` (``p_value <= alpha``, i.e. ``score > tau``)."""
        return self.p_value <= self.alpha

    @property
    def best_layers(self) -> tuple[int, int] | None:
        """(i, j) of the best observed layer pair (None without a sweep)."""
        return None if self.sweep is None else self.sweep.best_layers

    @property
    def null_mean(self) -> float:
        """Mean of the null statistics (the chance level of the aggregate)."""
        return float(self.null.mean())

    def to_dict(self, include_null: bool = False) -> dict:
        """JSON-ready summary (the null and the grid are included only when asked)."""
        out = {
            "metric": self.metric,
            "params": dict(self.params),
            "aggregate": self.aggregate,
            "score": self.score,
            "tau": self.tau,
            "p_value": self.p_value,
            "calibrated_score": self.calibrated,
            "significant": self.significant,
            "null_mean": self.null_mean,
            "K": self.K,
            "alpha": self.alpha,
            "seed": self.seed,
        }
        if self.sweep is not None:
            out["best_layers"] = list(self.sweep.best_layers)
        if include_null:
            out["null"] = self.null.tolist()
            if self.sweep is not None:
                out["grid"] = self.sweep.scores.tolist()
        return out


# --------------------------------------------------------------------------------------------------- formulas


def _exact_alpha(alpha: float) -> Fraction:
    """α as an exact fraction of its shortest decimal form (0.05 -> 1/20), so that ⌈(1−α)(K+1)⌉ is exact."""
    return Fraction(repr(float(alpha)))


def threshold_rank(K: int, alpha: float) -> int:
    """m = ⌈(1−α)(K+1)⌉, the 1-based rank of τ among the K+1 values (computed in exact arithmetic)."""
    return math.ceil((1 - _exact_alpha(alpha)) * (K + 1))


def min_permutations(alpha: float) -> int:
    """Smallest K for which a permutation test can reject at level α: α(K+1) >= 1, i.e. K >= ⌈1/α⌉ − 1.

    Equivalently τ = the ⌈(1−α)(K+1)⌉-th smallest value is not the largest of the K+1 values (m <= K), and the
    smallest reachable p-value 1/(K+1) is <= α.
    """
    return math.ceil(1 / _exact_alpha(alpha)) - 1


def permutation_threshold(observed: float, null: np.ndarray, alpha: float) -> float:
    """τ: the ⌈(1−α)(K+1)⌉-th smallest of ``{observed} ∪ null`` (K = len(null))."""
    values = np.sort(np.concatenate([[float(observed)], np.asarray(null, dtype=np.float64).ravel()]))
    return float(values[threshold_rank(values.size - 1, alpha) - 1])


def permutation_p_value(observed: float, null: np.ndarray) -> float:
    """p = (1 + #{s_k >= observed}) / (K+1); null values within :data:`TIE_RTOL` of ``observed`` count as ties."""
    null = np.asarray(null, dtype=np.float64).ravel()
    tol = TIE_RTOL * max(1.0, abs(float(observed)))
    return float((1 + np.count_nonzero(null >= float(observed) - tol)) / (null.size + 1))


def calibrated_score(observed: float, tau: float, bounded: bool, s_max: float = 1.0) -> float:
    """clip((observed − τ)/(s_max − τ), 0, 1) if ``bounded`` else max(observed − τ, 0).

    When τ >= s_max (nothing can beat chance) the calibrated score is 0.
    """
    if bounded:
        if tau >= s_max:
            return 0.0
        return float(min(max((observed - tau) / (s_max - tau), 0.0), 1.0))
    return float(max(observed - tau, 0.0))


def aggregate_grids(grids: torch.Tensor | np.ndarray, aggregate: str) -> np.ndarray:
    """Reduce (..., Lx, Ly) grids to one statistic each: ``max``, ``mean`` or ``row_max_mean``.

    ``row_max_mean`` is the mean over X layers of each X layer's best Y layer.
    """
    g = torch.as_tensor(grids, dtype=torch.float64)
    if aggregate == "max":
        out = g.amax(dim=(-2, -1))
    elif aggregate == "mean":
        out = g.mean(dim=(-2, -1))
    elif aggregate == "row_max_mean":
        out = g.amax(dim=-1).mean(dim=-1)
    else:
        raise InputError(
            f"aggregate={aggregate!r} is not one of {list(AGGREGATES)}.{suggest(aggregate, AGGREGATES)}"
        )
    return out.numpy()


# ------------------------------------------------------------------------------------------------- validation


def check_calibration_args(K: object, alpha: object, seed: object = 0) -> tuple[int, float, int]:
    """Validate the number of permutations, the level and the seed; return them as (int, float, int)."""
    K = check_int(K, "K", minimum=1, hint="a number of permutations; K=1000 is customary")
    alpha = check_float(
        alpha,
        "alpha",
        0.0,
        1.0,
        inclusive=(False, False),
        hint="a significance level strictly between 0 and 1",
    )
    need = min_permutations(alpha)
    if K < need:
        raise InputError(
            f"K={K} permutations cannot reach alpha={alpha}: the smallest possible p-value is 1/(K+1) = "
            f"{1 / (K + 1):.4g} > alpha. Use K >= {need} (K = ⌈1/alpha⌉ - 1), e.g. K=1000."
        )
    return K, alpha, check_int(seed, "seed")


def _grid_cells(x: object) -> int:
    """Number of layers of a sweep input, without validating it (for a memory estimate only)."""
    if isinstance(x, LayerCaches):
        return len(x.caches)
    if isinstance(x, (list, tuple)):
        return len(x)
    return int(x.shape[1]) if getattr(x, "ndim", 2) == 3 else 1


def check_samples(n: int, alpha: float) -> None:
    """Raise unless N samples have enough distinct permutations (N! >= ⌈1/α⌉) for a level-α test."""
    need = math.ceil(1 / _exact_alpha(alpha))
    if n < 3 or math.factorial(min(n, 20)) < need:
        smallest = 3
        while math.factorial(smallest) < need:
            smallest += 1
        raise InputError(
            f"N={n} samples are too few for a permutation test at alpha={alpha}: there are only {math.factorial(n)} "
            f"distinct orderings, so p can never reach alpha. Use at least N={smallest} samples (far more in practice)."
        )


# ------------------------------------------------------------------------------------------------------ core


def _caches(
    X: object, Y: object, metric: str, metric_kw: dict, device: torch.device | str | None
) -> tuple[LayerCaches, LayerCaches, list[torch.Tensor] | None]:
    """Cache X and Y (or reuse given LayerCaches); return the caches and Y's raw layers when available."""
    name = metric_spec(metric).name
    for side, obj in (("X", X), ("Y", Y)):
        if isinstance(obj, LayerCaches) and obj.metric != name:
            raise InputError(
                f"{side} was cached for metric {obj.metric!r}, not {name!r}; re-cache it or change metric."
            )
    if isinstance(X, LayerCaches):
        cx = X
        if metric_kw and cx.params != metric_spec(name).check_kwargs(cx.n, **metric_kw):
            raise InputError(f"X was cached with options {cx.params}, which differ from {metric_kw}.")
    else:
        cx = cache_layers(X, name, name="X", device=device, **metric_kw)
    raw_y = None
    if isinstance(Y, LayerCaches):
        cy = Y
        raw_y = None if Y.layers is None else [layer.to(cx.device) for layer in Y.layers]
    else:
        raw_y = [layer.to(cx.device) for layer in as_layers(Y, "Y")]
        if raw_y[0].shape[0] != cx.n:
            raise InputError(
                f"X and Y must describe the same samples: X has N={cx.n} rows, Y has N={raw_y[0].shape[0]}. "
                "Row i of both must be the same item."
            )
        cy = cache_layers(raw_y, name, name="Y", device=cx.device, **cx.params)
    if cy.n != cx.n:
        raise InputError(f"X and Y must describe the same samples: X has N={cx.n} rows, Y has N={cy.n}.")
    if cy.params != cx.params:
        raise InputError(f"X and Y were cached with different options: {cx.params} vs {cy.params}.")
    if cy.device != cx.device:
        raise InputError(f"X is on {cx.device} and Y on {cy.device}; cache both on the same device.")
    return cx, cy, raw_y


def calibrate_sweep(
    X: object,
    Y: object,
    metric: str = DEFAULT_METRIC,
    K: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    aggregate: str = "max",
    *,
    observed: Sweep | None = None,
    keep_null_grids: bool = False,
    device: torch.device | str | None = None,
    engine: str = "auto",
    **metric_kw: Any,
) -> CalibrationResult:
    """Layer-aggregated permutation calibration of a layer sweep.

    Each of the K permutations is applied to the rows of *every* layer of Y at once; the permuted grid is reduced
    by ``aggregate`` and these K values form the null of the observed aggregate, so the search over Lx * Ly layer
    pairs is accounted for.

    Parameters
    ----------
    X : (N, Lx, D_x) array, list of Lx (N, D_i) layers, or :class:`~prh._sweep.LayerCaches` from
        :func:`prh._sweep.cache_layers` (prepared features; reused as is).
    Y : same for the other model (Ly layers). Raw features allow the generic fallback for cache types without a
        re-indexing rule; LayerCaches skip recomputing the caches.
    metric : registry name (:func:`prh.metrics.names`).
    K : number of random permutations (>= ⌈1/α⌉ − 1; 1000 gives p-values down to 0.001).
    alpha : level of τ and of ``significant``.
    seed : seed of the permutations (a CPU ``torch.Generator``); results are deterministic for a seed.
    aggregate : ``"max"`` (best layer pair, default), ``"mean"`` (whole grid) or ``"row_max_mean"`` (mean over X
        layers of the best Y layer).
    observed : the observed :class:`~prh._sweep.Sweep` of these X and Y (e.g. from ``prh.sweep_caches`` on the same
        LayerCaches), reused instead of scoring the identity permutation again; its metric, options and shape
        must match.
    keep_null_grids : also return the (K, Lx, Ly) null grids.
    device : where to compute (default: X's device; a GPU when the inputs are there).
    engine : ``"auto"`` (fastest exact engine), or ``"fast"``, ``"permuted"``, ``"recompute"`` to force one
        (:mod:`prh.stats.null_grid`; tests and benchmarks).
    **metric_kw : metric options (``k``, ``kernel``, ``dim``, ...).

    Returns
    -------
    :class:`CalibrationResult` with the observed ``sweep``, ``score`` (the aggregate), ``tau``, ``p_value``,
    ``calibrated``, ``null`` (K,) and optionally ``null_grids``.
    """
    K, alpha, seed = check_calibration_args(K, alpha, seed)
    if aggregate not in AGGREGATES:
        raise InputError(
            f"aggregate={aggregate!r} is not one of {list(AGGREGATES)}.{suggest(str(aggregate), AGGREGATES)}"
        )
    spec = metric_spec(metric)
    require_memory(  # the K null values (and grids) are held at once: refuse before any work, not after
        8.0 * K * (1 + (_grid_cells(X) * _grid_cells(Y) if keep_null_grids else 0)),
        f"a permutation null of K={K} {'grids' if keep_null_grids else 'values'}",
        "use fewer permutations (K=1000 gives p-values down to 0.001)"
        + (", or keep_null_grids=False" if keep_null_grids else ""),
    )
    cx, cy, raw_y = _caches(X, Y, spec.name, metric_kw, device)
    check_samples(cx.n, alpha)
    eng = make_engine(spec, cx.caches, cy.caches, cx.params, raw_y=raw_y, engine=engine)

    shape = (len(cx.caches), len(cy.caches))
    if observed is not None:
        if observed.metric != spec.name or observed.params != cx.params or observed.scores.shape != shape:
            raise InputError(
                f"observed is a {observed.metric}{observed.params} sweep of shape {observed.scores.shape}, but "
                f"these caches are {spec.name}{cx.params} of shape {shape}; pass the sweep of the same X and Y."
            )
        grid = observed.scores
    else:
        grid = eng.grids(torch.arange(cx.n).view(1, -1))[0].numpy()
    if not np.all(np.isfinite(grid)):
        raise InputError(f"{spec.name} produced non-finite scores; check the inputs for degenerate layers.")
    sweep = Sweep(np.array(grid, dtype=np.float64), spec.name, dict(cx.params))
    statistic = float(aggregate_grids(sweep.scores, aggregate))

    generator = torch.Generator().manual_seed(seed)
    null = np.empty(K, dtype=np.float64)
    grids_out = np.empty((K, *shape), dtype=np.float64) if keep_null_grids else None
    done = 0
    while done < K:
        size = min(eng.batch_size, K - done)
        perms = random_permutations(cx.n, size, generator)
        grids = eng.grids(perms)
        null[done : done + size] = aggregate_grids(grids, aggregate)
        if grids_out is not None:
            grids_out[done : done + size] = grids.numpy()
        done += size
    if not np.all(np.isfinite(null)):
        raise InputError(
            f"{spec.name} produced non-finite null scores; check the inputs for degenerate layers."
        )

    tau = permutation_threshold(statistic, null, alpha)
    p_value = permutation_p_value(statistic, null)
    calibrated = calibrated_score(statistic, tau, spec.bounded, s_max=spec.value_range[1])
    if p_value > alpha:  # only differs from s_obs <= tau for float-rounding ties (TIE_RTOL)
        calibrated = 0.0
    return CalibrationResult(
        score=statistic,
        tau=tau,
        p_value=p_value,
        calibrated=calibrated,
        K=K,
        alpha=alpha,
        null=null,
        metric=spec.name,
        params=dict(cx.params),
        aggregate=aggregate,
        sweep=sweep,
        null_grids=grids_out,
        seed=seed,
    )


def calibrate(
    X: object,
    Y: object,
    metric: str = DEFAULT_METRIC,
    K: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    **metric_kw: Any,
) -> CalibrationResult:
    """Permutation calibration of one pair of layers.

    Parameters
    ----------
    X, Y : (N, D_x), (N, D_y) arrays (prepared features), same N, row i of both the same item.
    metric : registry name.
    K : number of random row permutations of Y (>= ⌈1/α⌉ − 1).
    alpha : level of τ.
    seed : permutation seed (deterministic results).
    **metric_kw : metric options.

    Returns
    -------
    :class:`CalibrationResult`: ``score`` = metric(X, Y), ``tau``, ``p_value``, ``calibrated``, ``K``, ``alpha``,
    ``null`` (K,) = metric(X, Y[perm_k]).
    """
    for name, obj in (("X", X), ("Y", Y)):
        if isinstance(obj, (list, tuple, LayerCaches)) or getattr(obj, "ndim", 2) != 2:
            raise InputError(
                f"{name} must be one (N, D) layer for calibrate(); use calibrate_sweep() for layer sweeps."
            )
    return calibrate_sweep(X, Y, metric, K=K, alpha=alpha, seed=seed, aggregate="max", **metric_kw)
