"""Row permutations of features and of per-layer metric caches (the building block of permutation nulls).

A permutation ``perm`` of the N samples turns ``Y`` into ``Y[perm]`` (row i of the permuted data is the old row
``perm[i]``). For every cache type of :mod:`prh.metrics` the cache of ``Y[perm]`` is a re-indexing of the cache of
``Y``, so a null distribution never has to recompute neighbours, Gram matrices or SVDs:

* :class:`~prh.metrics.knn.KnnCache` — neighbour lists: ``inv[knn[perm]]`` where ``inv`` is the inverse
  permutation (the neighbours of the new row i are the old neighbours of ``perm[i]``, renamed);
* :class:`~prh.metrics.cka.CenteredKernel` — ``K[perm][:, perm]`` (centring commutes with permutations, the
  self-HSIC is unchanged);
* :class:`~prh.metrics.cknna.NeighborKernel` — the Gram matrix as above, the neighbour lists as for kNN, and the
  per-neighbour values and reverse flags by rows;
* :class:`~prh.metrics.svcca.SingularBasis` — rows ``U[perm]`` (the SVD of ``P X`` is ``P U S V^T``).

Other cache types (metrics added later) can register their own rule with ``permute_cache.register``; without one,
calibration falls back to permuting the raw rows and recomputing the cache (:func:`has_permuter` tells which).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from prh.metrics.cka import CenteredKernel
from prh.metrics.cknna import NeighborKernel
from prh.metrics.knn import KnnCache
from prh.metrics.null import permute_neighbors, permute_square
from prh.metrics.svcca import SingularBasis


class NoPermuterError(NotImplementedError):
    """Raised by :func:`permute_cache` for a cache type without a re-indexing rule."""


def random_permutations(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` independent uniform permutations of ``range(n)`` as a (count, n) int64 CPU tensor.

    Drawn one after the other from ``generator`` (CPU), so permutation number k depends only on the seed and k —
    not on batch sizes or on the device the null is computed on.
    """
    if count == 0:
        return torch.empty((0, n), dtype=torch.long)
    return torch.stack([torch.randperm(n, generator=generator) for _ in range(count)])


def permute_rows(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``x[perm]``: the features of the permuted samples (row i is the old row ``perm[i]``)."""
    return x.index_select(0, perm.to(x.device))


def has_permuter(cache: Any) -> bool:
    """Whether :func:`permute_cache` knows how to re-index ``cache`` (else recompute from permuted rows)."""
    return permute_cache.dispatch(type(cache)) is not _permute_unknown


@functools.singledispatch
def permute_cache(cache: Any, perm: torch.Tensor, inv: torch.Tensor) -> Any:
    """The cache of ``Y[perm]`` computed from the cache of ``Y`` by re-indexing.

    Parameters
    ----------
    cache : a per-layer cache of one metric (see the module docstring for the supported types).
    perm : (N,) int64 permutation on the cache's device.
    inv : (N,) its inverse (:func:`prh.metrics.null.inverse_permutation`).

    Raises
    ------
    NoPermuterError
        For cache types without a rule (use ``permute_cache.register(MyCache)`` to add one).
    """
    return _permute_unknown(cache, perm, inv)


def _permute_unknown(cache: Any, perm: torch.Tensor, inv: torch.Tensor) -> Any:
    raise NoPermuterError(f"no re-indexing rule for cache type {type(cache).__name__}")


permute_cache.register(object, _permute_unknown)


@permute_cache.register
def _(cache: KnnCache, perm: torch.Tensor, inv: torch.Tensor) -> KnnCache:
    return KnnCache(permute_neighbors(cache.knn, perm, inv))


@permute_cache.register
def _(cache: CenteredKernel, perm: torch.Tensor, inv: torch.Tensor) -> CenteredKernel:
    return CenteredKernel(permute_square(cache.centered, perm), cache.self_hsic)


@permute_cache.register
def _(cache: NeighborKernel, perm: torch.Tensor, inv: torch.Tensor) -> NeighborKernel:
    return NeighborKernel(
        gram=permute_square(cache.gram, perm),
        knn=permute_neighbors(cache.knn, perm, inv),
        values=cache.values.index_select(0, perm),
        reverse=cache.reverse.index_select(0, perm),
        self_similarity=cache.self_similarity,
    )


@permute_cache.register
def _(cache: SingularBasis, perm: torch.Tensor, inv: torch.Tensor) -> SingularBasis:
    return SingularBasis(cache.basis.index_select(0, perm))
