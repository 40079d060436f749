"""Confidence intervals for alignment scores by subsampling (default) or the ordinary bootstrap.

Why not the ordinary bootstrap everywhere: resampling rows *with* replacement duplicates samples. A duplicated
sample is its own nearest neighbour at similarity 1 in both representations, so neighbour-based metrics jump up,
and unbiased HSIC estimators assume distinct samples. So the default is
**m-out-of-n subsampling without replacement**, read as a delete-d jackknife (Shao & Wu 1989):

* draw B random subsets of m = round(fraction * N) distinct rows (default fraction 1/2), the same rows for every
  layer of X and Y, and recompute the score (or the layer-grid aggregate) on each: θ*_1..θ*_B;
* the spread of θ* around its own mean θ̄* estimates the spread of the full-sample score after rescaling by
  c = sqrt(m / (N − m)) (the delete-d jackknife factor; for a mean, Var of a without-replacement subsample mean is
  (1 − m/N) σ²/m, and c² times that is σ²/N). With the default m = N/2, c = 1;
* interval: [θ̂ + c q_{(1−level)/2}(θ* − θ̄*), θ̂ + c q_{(1+level)/2}(θ* − θ̄*)], θ̂ the full-sample score, clipped
  to the metric's range.

Centring on θ̄* (not on θ̂) removes the systematic shift of kNN metrics with sample size (e.g. the chance level
k/(m−1) is larger than k/(N−1)); the interval describes sampling variability of the full-N score, *given* the
metric options (k is kept fixed). The raw percentiles of θ* are also returned (``subsample_low/high``): they are an
interval for the score at sample size m, not at N.

``method="bootstrap"`` (ordinary percentile bootstrap, with replacement) is allowed only for metrics where
duplicates are harmless: the spec says the metric uses no neighbours (``uses_k``) and the options select no
unbiased estimator.

Metrics whose cache is a function of the layer's inner products (``MetricSpec.gram_cache``) get their replicates'
caches from each layer's Gram matrix, computed once: a subsample's cache comes from ``G[idx][:, idx]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prh._sweep import LayerCaches, as_layers
from prh._validation import check_choice, check_float, check_int
from prh.errors import InputError
from prh.metrics import DEFAULT_METRIC
from prh.metrics import spec as metric_spec
from prh.stats._calibrate import AGGREGATES, aggregate_grids

#: Largest total size (bytes) of the per-layer Gram matrices precomputed by the kNN fast path.
GRAM_BYTES = 2**30
METHODS = ("subsample", "bootstrap")


@dataclass(frozen=True, eq=False)
class BootstrapResult:
    """A confidence interval for a score.

    Attributes
    ----------
    score : full-sample score (or layer-grid aggregate).
    ci_low, ci_high : interval at ``level`` for the full-sample score.
    level : confidence level, e.g. 0.95.
    B : number of replicates.
    method : ``"subsample"`` (without replacement, delete-d jackknife rescaling) or ``"bootstrap"``.
    m : rows per replicate (N for the bootstrap).
    n : N.
    replicates : (B,) float64 replicate scores.
    subsample_low, subsample_high : raw percentiles of the replicates (an interval at sample size m).
    metric, params, aggregate, seed : what was computed.
    """

    score: float
    ci_low: float
    ci_high: float
    level: float
    B: int
    method: str
    m: int
    n: int
    replicates: np.ndarray
    subsample_low: float
    subsample_high: float
    metric: str
    params: dict = field(default_factory=dict)
    aggregate: str = "max"
    seed: int = 0

    @property
    def low(self) -> float:
        """Alias of :attr:`ci_low`."""
        return self.ci_low

    @property
    def high(self) -> float:
        """Alias of :attr:`ci_high`."""
        return self.ci_high

    def to_dict(self, include_replicates: bool = False) -> dict:
        """JSON-ready summary."""
        out = {
            "metric": self.metric,
            "params": dict(self.params),
            "aggregate": self.aggregate,
            "score": self.score,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "level": self.level,
            "B": self.B,
            "method": self.method,
            "m": self.m,
            "n": self.n,
            "subsample_low": self.subsample_low,
            "subsample_high": self.subsample_high,
            "seed": self.seed,
        }
        if include_replicates:
            out["replicates"] = self.replicates.tolist()
        return out


def _check_args(B: object, level: object, fraction: object, method: object, aggregate: object) -> None:
    check_int(B, "B", minimum=2, hint="a number of replicates, e.g. B=1000")
    check_float(level, "level", 0.0, 1.0, inclusive=(False, False), hint="a confidence level, e.g. 0.95")
    check_choice(method, "method", METHODS)
    check_float(fraction, "fraction", 0.0, 1.0, inclusive=(False, False), hint="default 0.5: half-samples")
    check_choice(aggregate, "aggregate", AGGREGATES)


class _Scorer:
    """Scores row subsets of X and Y (all layers alike) with one metric; Gram-based caches from stored Grams."""

    def __init__(self, metric: str, xs: list[torch.Tensor], ys: list[torch.Tensor], metric_kw: dict) -> None:
        self.spec = metric_spec(metric)
        n = xs[0].shape[0]
        full = self.spec.check_kwargs(
            n, **metric_kw
        )  # layers of extreme magnitude: rescaled once, or refused
        xs, ys = self.spec.fit_scale(xs, full), self.spec.fit_scale(ys, full)
        self.xs, self.ys, self.kw = xs, ys, metric_kw
        # a cache that is a function of the inner products: a subsample's cache comes from the stored Gram
        self.grams = None
        if self.spec.gram_cache is not None and (len(xs) + len(ys)) * n * n * 4 <= GRAM_BYTES:
            self.grams = ([x @ x.T for x in xs], [y @ y.T for y in ys])

    def params(self, m: int) -> dict:
        return self.spec.check_kwargs(m, **self.kw)

    def grid(self, idx: torch.Tensor | None, params: dict) -> torch.Tensor:
        caches = None
        if self.grams is not None:
            gidx = None if idx is None else idx.to(self.grams[0][0].device)
            pick = (lambda g: g) if gidx is None else (lambda g: g[gidx][:, gidx])
            caches = [[self.spec.gram_cache(pick(g), **params) for g in side] for side in self.grams]
            if any(c is None for side in caches for c in side):  # these options need the rows themselves
                self.grams, caches = None, None
        if caches is None:
            if idx is not None:
                idx = idx.to(self.xs[0].device)
            pick = (lambda t: t) if idx is None else (lambda t: t.index_select(0, idx))
            caches = [self.spec.caches([pick(t) for t in side], **params) for side in (self.xs, self.ys)]
        return self.spec.grid(caches[0], caches[1], **params).detach().to("cpu", torch.float64)


def bootstrap_ci(
    X: object,
    Y: object,
    metric: str = DEFAULT_METRIC,
    B: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    *,
    method: str = "subsample",
    fraction: float = 0.5,
    aggregate: str = "max",
    device: torch.device | str | None = None,
    **metric_kw: Any,
) -> BootstrapResult:
    """Confidence interval for ``metric(X, Y)`` (one pair) or for the aggregate of a layer sweep.

    Parameters
    ----------
    X, Y : (N, D) arrays (one pair) or (N, L, D) arrays / lists of (N, D_l) layers (a sweep: every replicate uses
        the same rows in every layer and reduces the grid with ``aggregate``, so re-selecting the best layer pair is
        part of the interval). Prepared features; LayerCaches cannot be subsampled.
    metric : registry name.
    B : number of replicates (1000 for a final figure; 200 is enough for a quick look).
    level : confidence level.
    seed : seed of the row draws (CPU ``torch.Generator``); deterministic.
    method : ``"subsample"`` (default; without replacement, m = round(fraction * N), delete-d jackknife rescaling,
        see the module docstring) or ``"bootstrap"`` (ordinary percentile bootstrap; refused for kNN metrics and
        unbiased estimators, which duplicated rows bias).
    fraction : subsample fraction m/N (default 0.5, where the rescaling factor is 1).
    aggregate : ``"max"``, ``"mean"`` or ``"row_max_mean"`` for sweeps.
    device : where to compute (default: X's device).
    **metric_kw : metric options; they must be valid for m rows (e.g. k < m).

    Returns
    -------
    :class:`BootstrapResult` with ``score``, ``ci_low``, ``ci_high`` and the replicates.
    """
    _check_args(B, level, fraction, method, aggregate)
    check_int(seed, "seed")
    spec = metric_spec(metric)
    for side, obj in (("X", X), ("Y", Y)):
        if isinstance(obj, LayerCaches):
            raise InputError(
                f"{side} is a LayerCaches; bootstrap_ci needs the raw (prepared) features to subsample rows."
            )
    xs = as_layers(X, "X")
    if device is not None:
        xs = [x.to(device) for x in xs]
    ys = [y.to(xs[0].device) for y in as_layers(Y, "Y")]
    n = xs[0].shape[0]
    if ys[0].shape[0] != n:
        raise InputError(
            f"X and Y must describe the same samples: X has N={n} rows, Y has N={ys[0].shape[0]}. "
            "Row i of both must be the same item."
        )
    scorer = _Scorer(spec.name, xs, ys, metric_kw)
    params = scorer.params(n)
    if method == "bootstrap" and (spec.uses_k or params.get("unbiased")):
        raise InputError(
            f"method='bootstrap' resamples rows with replacement; duplicated rows corrupt {spec.name} (nearest "
            "neighbours / unbiased estimators assume distinct samples). Use method='subsample'."
        )
    m = n if method == "bootstrap" else int(round(fraction * n))
    if method == "subsample":
        if m < 4 or m >= n:
            raise InputError(
                f"fraction={fraction} of N={n} gives subsamples of m={m} rows; need 4 <= m < N. "
                "Use more samples or another fraction."
            )
        try:
            sub_params = scorer.params(m)
        except InputError as err:
            raise InputError(f"subsamples of m={m} rows (fraction={fraction} of N={n}): {err}") from err
    else:
        sub_params = params

    score = float(aggregate_grids(scorer.grid(None, params), aggregate))
    generator = torch.Generator().manual_seed(int(seed))
    reps = np.empty(B, dtype=np.float64)
    for b in range(B):
        if method == "subsample":
            idx = torch.randperm(n, generator=generator)[:m]
        else:
            idx = torch.randint(n, (n,), generator=generator)
        reps[b] = float(aggregate_grids(scorer.grid(idx, sub_params), aggregate))
    if not np.all(np.isfinite(reps)):
        raise InputError(
            f"{spec.name} produced non-finite scores on some replicates; check for degenerate layers."
        )

    lo_q, hi_q = (1 - level) / 2, (1 + level) / 2
    raw_lo, raw_hi = np.quantile(reps, [lo_q, hi_q])
    if method == "subsample":
        c = math.sqrt(m / (n - m))
        dev = reps - reps.mean()
        ci_low, ci_high = score + c * np.quantile(dev, lo_q), score + c * np.quantile(dev, hi_q)
    else:
        ci_low, ci_high = raw_lo, raw_hi
    low_bound, high_bound = spec.value_range
    return BootstrapResult(
        score=score,
        ci_low=float(np.clip(ci_low, low_bound, high_bound)),
        ci_high=float(np.clip(ci_high, low_bound, high_bound)),
        level=float(level),
        B=int(B),
        method=method,
        m=m,
        n=n,
        replicates=reps,
        subsample_low=float(raw_lo),
        subsample_high=float(raw_hi),
        metric=spec.name,
        params=dict(params),
        aggregate=aggregate,
        seed=int(seed),
    )
