"""Building blocks of batched permutation nulls that a metric module may provide (see :class:`MetricSpec`).

A metric can give the statistics of :mod:`prh.stats` two shortcuts, both defined next to the metric itself:

* ``permute_cache(cache, perm, inv)`` — the cache of ``Y[perm]`` re-indexed from the cache of ``Y`` (no
  recomputation of neighbours, Gram matrices or SVDs);
* ``null_engine(xs, ys, params)`` — a :class:`NullEngine` that scores a whole batch of permutations at once, or
  None when it does not fit in memory (the generic engines of :mod:`prh.stats.null_grid` are used then).

This module holds what those need and nothing metric-specific: the engine interface and permutation helpers.
A metric without either shortcut still calibrates: its caches are recomputed from row-permuted raw layers.
"""

from __future__ import annotations

import torch


class NullEngine:
    """Maps a (B, N) batch of permutations to (B, Lx, Ly) float64 null grids (on CPU).

    ``grids(perms)[b, i, j] = metric(X_i, Y_j[perms[b]])``: the same permutation is applied to every layer of Y.
    """

    #: a good number of permutations per call (bounded memory)
    batch_size: int = 16

    def grids(self, perms: torch.Tensor) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


def inverse_permutation(perm: torch.Tensor) -> torch.Tensor:
    """Inverse of a permutation (or of each row of a (B, N) batch): ``inv[perm[i]] = i``."""
    inv = torch.empty_like(perm)
    src = torch.arange(perm.shape[-1], device=perm.device).expand_as(perm)
    return inv.scatter_(-1, perm, src)


def permute_neighbors(knn: torch.Tensor, perm: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    """(N, k) neighbour lists of ``Y[perm]`` from those of ``Y``: the old neighbours of ``perm[i]``, renamed."""
    return inv[knn.index_select(0, perm)]


def permute_square(m: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``m[perm][:, perm]`` of an (N, N) matrix (Gram matrices, RDMs, centred kernels)."""
    return m.index_select(0, perm).index_select(1, perm)
