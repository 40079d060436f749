"""Noise ceiling of a repeated measurement: split-half reliability of its kernel, Spearman–Brown corrected.

A recording with R repeats (trials, sessions or subjects), each an (N, D) response to the same N items, is stored
as its mean over the repeats. How well could any model align with that mean? Split the R repeats into two halves of
m = floor(R / 2) repeats each, average each half, prepare both like stored features (:func:`prh.prepare`: clamp at
the ``q`` quantile, L2-normalise rows) and score the two half-means against each other with the alignment metric:
that is the split-half reliability r_h of the metric's kernel. The Spearman–Brown formula extrapolates it from m to
R repeats, f = R / m::

    ceiling = f * r_h / (1 + (f - 1) * r_h)

which is what two independent recordings of R repeats each are expected to score against each other: a model
that scores the ceiling agrees with the recording as well as a replication of the recording would. The
ceiling-normalised score of a model is ``raw / ceiling`` (as Brain-Score and rsatoolbox report it).

Every distinct split is used when there are at most ``splits`` of them (R = 4: three), otherwise ``splits`` random
ones; the interval is the central ``level`` range of the corrected values over the splits (the spread due to which
repeats fall in which half, not the sampling error of the items).

The Spearman–Brown step assumes the score behaves like a correlation between signal-plus-noise measurements (true
for kernel cosines such as linear CKA when the noise is independent across repeats); for neighbourhood metrics
(mutual kNN) it is an approximation. A split-half score <= 0 gives a ceiling <= 0: no normalised score is defined.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np
import torch

from prh._prepare import prepare
from prh._validation import check_choice, check_float, check_int
from prh.errors import InputError
from prh.metrics import DEFAULT_METRIC
from prh.metrics import get as metric_fn
from prh.metrics import names as metric_names
from prh.metrics import spec as metric_spec


@dataclass(frozen=True)
class NoiseCeiling:
    """The noise ceiling of one repeated measurement for one metric.

    Attributes
    ----------
    metric : str
    value : float
        Mean Spearman–Brown-corrected split-half score over the splits: the expected score of two independent
        recordings of ``repeats`` repeats.
    low, high : float
        Central ``level`` interval of the corrected values over the splits.
    split_half : float
        Mean uncorrected split-half score.
    repeats : int
        R.
    splits : int
        Splits used.
    """

    metric: str
    value: float
    low: float
    high: float
    split_half: float
    repeats: int
    splits: int

    def to_dict(self) -> dict:
        """Plain JSON values."""
        return asdict(self)

    def normalise(self, score: float) -> float:
        """``score / value``; NaN when the ceiling is not positive."""
        return float(score) / self.value if self.value > 0 else float("nan")


def spearman_brown(r: float, factor: float) -> float:
    """Reliability of a measurement ``factor`` times as long as one with reliability ``r``:
    ``factor * r / (1 + (factor - 1) * r)``; NaN where the denominator is not positive."""
    den = 1.0 + (factor - 1.0) * r
    return factor * r / den if den > 0 else float("nan")


def _splits(
    r: int, m: int, splits: int, rng: np.random.Generator
) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Distinct unordered pairs of disjoint m-subsets of range(r): all of them when there are at most ``splits``,
    else ``splits`` random ones."""
    total = math.comb(r, m) * math.comb(r - m, m) // (2 if 2 * m == r else 1)
    if 2 * m == r and total <= splits:
        return [
            (a, tuple(i for i in range(r) if i not in a))
            for a in itertools.combinations(range(r), m)
            if 0 in a
        ]
    if total <= splits:
        out = []
        for a in itertools.combinations(range(r), m):
            rest = [i for i in range(r) if i not in a]
            out += [(a, b) for b in itertools.combinations(rest, m) if a < b]
        return out
    seen: set = set()
    out = []
    while len(out) < splits:
        perm = rng.permutation(r)
        a, b = tuple(sorted(perm[:m].tolist())), tuple(sorted(perm[m : 2 * m].tolist()))
        key = (min(a, b), max(a, b))
        if key not in seen:
            seen.add(key)
            out.append(key)
    return out


def noise_ceiling(
    repeats: torch.Tensor | np.ndarray | list,
    metric: str = DEFAULT_METRIC,
    *,
    splits: int = 100,
    seed: int = 0,
    q: float = 0.95,
    level: float = 0.95,
    **metric_kw: object,
) -> NoiseCeiling:
    """Split-half noise ceiling of a repeated measurement for ``metric`` (see the module docstring).

    Parameters
    ----------
    repeats : (R, N, D) array or a list of R (N, D) arrays
        The repeated measurements, R >= 2, finite.
    metric : str
        Any metric of :func:`prh.metrics.names` (default :data:`prh.metrics.DEFAULT_METRIC`).
    splits : int, default 100
        At most this many splits (all distinct ones when there are fewer), >= 1.
    seed : int
        Seed of the random splits.
    q : float, default 0.95
        Clamp quantile of :func:`prh.prepare`, applied to each half-mean as to stored features.
    level : float, default 0.95
        Coverage of the interval over splits.
    **metric_kw
        The metric's options (e.g. ``k``).

    Raises
    ------
    InputError
        Fewer than 2 repeats, a wrong shape, non-finite values, or an unknown metric.
    """
    metric = check_choice(metric, "metric", metric_names())
    splits = check_int(splits, "splits", minimum=1, hint="a number of random splits")
    level = check_float(level, "level", 0.0, 1.0, inclusive=(False, False), hint="the interval's coverage")
    if isinstance(repeats, (list, tuple)):
        repeats = torch.stack([torch.as_tensor(r) for r in repeats])
    x = torch.as_tensor(repeats)
    if x.ndim != 3 or x.shape[0] < 2:
        raise InputError(
            f"repeats must have shape (R, N, D) with R >= 2 repeated measurements, got {tuple(x.shape)}."
        )
    if not torch.is_floating_point(x) or not bool(torch.isfinite(x).all()):
        raise InputError("repeats must hold finite floating-point values (no NaN/Inf).")
    x = x.to(torch.float64)
    r = int(x.shape[0])
    m = r // 2
    fn = metric_fn(metric)
    kw = {key: value for key, value in metric_kw.items() if key in metric_spec(metric).defaults}
    raw = []
    for a, b in _splits(r, m, splits, np.random.default_rng(seed)):
        half_a = prepare(x[list(a)].mean(0).float(), q=q)
        half_b = prepare(x[list(b)].mean(0).float(), q=q)
        raw.append(float(fn(half_a, half_b, **kw)))
    factor = r / m
    corrected = np.array([spearman_brown(v, factor) for v in raw])
    tail = (1.0 - level) / 2.0
    return NoiseCeiling(
        metric=metric,
        value=float(np.mean(corrected)),
        low=float(np.quantile(corrected, tail)),
        high=float(np.quantile(corrected, 1.0 - tail)),
        split_half=float(np.mean(raw)),
        repeats=r,
        splits=len(raw),
    )


__all__ = ["NoiseCeiling", "noise_ceiling", "spearman_brown"]
