"""Batched null grids: the (Lx, Ly) score grid of X against row-permuted Y, for many permutations at once.

An engine is built once per (X, Y) pair from the per-layer caches and then maps a (B, N) batch of permutations to a
(B, Lx, Ly) float64 tensor of grids, ``grids[b, i, j] = metric(X_i, Y_j[perms[b]])``. The same permutation is applied
to every layer of Y. Which engine runs is decided by the metric's :class:`~prh.metrics.registry.MetricSpec` alone,
fastest first:

* ``"fast"`` — the metric's own batched engine (``spec.null_engine``, defined next to the metric), when it has one
  and it fits in memory;
* ``"permuted"`` — :class:`PermutedCacheEngine`: re-index Y's caches with the metric's rule (``spec.permute_cache``)
  and score them with the metric's own batched ``grid`` (B * Ly "layers" at once);
* ``"recompute"`` — :class:`RecomputeEngine`: permute Y's raw rows and recompute its caches (every metric).

All engines give the same numbers as calling the metric on ``(X_i, Y_j[perm])`` (tested for every registered
metric), up to float rounding. Nothing here knows a metric or a cache type.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from prh.errors import InputError
from prh.metrics.null import NullEngine, inverse_permutation
from prh.metrics.registry import MetricSpec
from prh.stats.permute import permute_rows

#: Engine names accepted by :func:`make_engine` (``"auto"`` picks the first that is available).
ENGINES = ("auto", "fast", "permuted", "recompute")


class PermutedCacheEngine(NullEngine):
    """Re-index Y's caches with ``spec.permute_cache`` and score them with the metric's ``grid``."""

    def __init__(self, spec: MetricSpec, xs: Sequence[Any], ys: Sequence[Any], params: dict) -> None:
        self.spec = spec
        self.xs, self.ys, self.params = list(xs), list(ys), params
        self.lx, self.ly = len(xs), len(ys)
        self.batch_size = max(1, 64 // self.ly)

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        perms = perms.to(_cache_device(self.ys[0]))
        inv = inverse_permutation(perms)
        batch = [self.spec.permute_cache(c, p, q) for p, q in zip(perms, inv) for c in self.ys]
        grid = self.spec.grid(self.xs, batch, **self.params)  # (Lx, B*Ly)
        return grid.detach().to("cpu", torch.float64).view(self.lx, perms.shape[0], self.ly).permute(1, 0, 2)


class RecomputeEngine(NullEngine):
    """Generic fallback: permute Y's raw rows and recompute its caches (works for every registered metric)."""

    def __init__(
        self, spec: MetricSpec, xs: Sequence[Any], raw_y: Sequence[torch.Tensor], params: dict
    ) -> None:
        self.spec = spec
        self.xs, self.raw_y, self.params = list(xs), list(raw_y), params
        self.lx, self.ly = len(xs), len(raw_y)
        self.batch_size = max(1, 16 // self.ly)

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        batch = self.spec.caches([permute_rows(y, p) for p in perms for y in self.raw_y], **self.params)
        grid = self.spec.grid(self.xs, batch, **self.params)
        return grid.detach().to("cpu", torch.float64).view(self.lx, perms.shape[0], self.ly).permute(1, 0, 2)


def _cache_device(cache: Any) -> torch.device:
    for value in vars(cache).values():
        if isinstance(value, torch.Tensor):
            return value.device
    return torch.device("cpu")


def make_engine(
    spec: MetricSpec,
    xs: Sequence[Any],
    ys: Sequence[Any],
    params: dict,
    raw_y: Sequence[torch.Tensor] | None = None,
    engine: str = "auto",
) -> NullEngine:
    """Pick the fastest engine that is exact for this metric (see the module docstring).

    Parameters
    ----------
    spec : the metric's :class:`~prh.metrics.registry.MetricSpec`.
    xs, ys : per-layer caches of X and Y (``LayerCaches.caches``).
    params : checked metric options (``LayerCaches.params``).
    raw_y : Y's raw (N, D_j) layers, needed only by the recompute fallback.
    engine : one of :data:`ENGINES`; a specific one (for tests and benchmarks) raises
        :class:`~prh.errors.InputError` when it is not available for this metric.
    """
    if engine not in ENGINES:
        raise InputError(f"engine={engine!r} is not one of {list(ENGINES)}.")
    if engine in ("auto", "fast") and spec.null_engine is not None:
        fast = spec.null_engine(xs, ys, params)
        if fast is not None:
            return fast
    if engine == "fast":
        raise InputError(
            f"metric {spec.name!r} has no fast null engine for these caches (none registered, or it does not fit "
            "in memory); use engine='auto'."
        )
    if engine in ("auto", "permuted") and spec.permute_cache is not None:
        return PermutedCacheEngine(spec, xs, ys, params)
    if engine == "permuted":
        raise InputError(f"metric {spec.name!r} has no re-indexing rule for its caches; use engine='auto'.")
    if raw_y is None:
        raise InputError(
            f"cannot permute the cached layers of {spec.name!r} (its caches have no re-indexing rule and no raw "
            "layers were kept): pass Y's raw features, or LayerCaches from prh._sweep.cache_layers (they keep them)."
        )
    return RecomputeEngine(spec, xs, raw_y, params)
