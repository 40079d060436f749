"""Set-based and directional neighbourhood metrics: Jaccard kNN and cycle kNN in both directions.

* ``jaccard_knn``: per sample, |N_A(i) ∩ N_B(i)| / |N_A(i) ∪ N_B(i)| of the two k-neighbour sets, averaged.
  With s shared neighbours the per-sample value is s / (2k - s); mutual kNN is s / k.
* ``cycle_knn`` (registered in :mod:`prh.metrics.knn`, the reference's direction) goes from sample i to its
  B-neighbours and back through their A-neighbours. ``cycle_knn_ba`` is the other direction
  (``cycle_knn_ba(A, B) == cycle_knn(B, A)``) and ``cycle_knn_both`` the mean of the two (symmetric).
  :func:`cycle_knn_directions` returns both directions at once. Each registry name keeps one float per pair.

All of them reuse the per-layer (N, k) neighbour lists of :class:`prh.metrics.knn.KnnCache`, so a sweep finds
each layer's neighbours once.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import comb

import torch

from prh._validation import check_pair
from prh.metrics._common import score_pair
from prh.metrics.knn import (
    KNN_SPEC_FIELDS,
    KnnCache,
    _check_k_kwargs,
    _chunks,
    _cycle_grid,
    _cycle_null,
    _knn_cache,
    knn_options,
)
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, register


def _jaccard_grid(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int, **_: object) -> torch.Tensor:
    """Mean over samples of s / (2k - s), s = number of shared neighbours (batched over y layers)."""
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    n = xs[0].knn.shape[0]
    for start, ys_knn in _chunks(ys, n * k * k):
        for i, cx in enumerate(xs):
            shared = (cx.knn[None, :, :, None] == ys_knn[:, :, None, :]).sum(dim=(2, 3)).double()
            grid[i, start : start + ys_knn.shape[0]] = (shared / (2 * k - shared)).mean(dim=1).cpu()
    return grid


def _cycle_ba_grid(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int, **_: object) -> torch.Tensor:
    """Grid of cycle_knn(Y_j, X_i): start at i, go to its A-neighbours (x layer), come back through B."""
    return _cycle_grid(ys, xs, k).T.contiguous()


def _cycle_both_grid(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int, **_: object) -> torch.Tensor:
    return 0.5 * (_cycle_grid(xs, ys, k) + _cycle_ba_grid(xs, ys, k))


def jaccard_null(n: int, k: int) -> float:
    """Exact expected Jaccard kNN of independent representations.

    The neighbour sets of a sample are then two independent uniform k-subsets of the other N-1 samples, so the
    overlap s is hypergeometric: E = sum_s P(s) s / (2k - s), P(s) = C(k, s) C(N-1-k, k-s) / C(N-1, k).
    """
    total = comb(n - 1, k)
    return sum(comb(k, s) * comb(n - 1 - k, k - s) / total * s / (2 * k - s) for s in range(k + 1))


def jaccard_knn(A: object, B: object, k: int = 10, neighbors: str = "exact") -> float:
    """Jaccard similarity of the k-nearest-neighbour sets, averaged over samples.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N, used as given.
    k : neighbours per sample (inner product, self excluded), ``1 <= k < N``.

    Returns
    -------
    float in [0, 1]: mean_i |N_A(i) ∩ N_B(i)| / |N_A(i) ∪ N_B(i)|; 1 for identical neighbourhoods; about
    k / (2(N-1)) for independent inputs (exact value: :func:`jaccard_null`). Symmetric. Invariant to orthogonal
    maps and isotropic scaling (anything that keeps the inner-product ranking), not to translations.
    """
    return score_pair(JACCARD_KNN, A, B, **knn_options(k, neighbors))


def cycle_knn_ba(A: object, B: object, k: int = 10, neighbors: str = "exact") -> float:
    """Cycle kNN in the B -> A direction: ``cycle_knn(B, A)``.

    Fraction of samples i found among the B-neighbours of one of i's A-neighbours. Float in [0, 1]. Not 1 for
    identical inputs in general, like :func:`~prh.metrics.cycle_knn`: i is recovered only if it is itself a
    neighbour of one of its neighbours (kNN relations are not symmetric). For 64 random unit vectors in 32-d it is
    0.53 at k=1 (the fraction of reciprocal nearest neighbours) and 1.0 at k=10. Not symmetric; see :func:`cycle_knn_directions` for both directions at once.
    """
    return score_pair(CYCLE_KNN_BA, A, B, **knn_options(k, neighbors))


def cycle_knn_both(A: object, B: object, k: int = 10, neighbors: str = "exact") -> float:
    """Mean of the two cycle-kNN directions, ``(cycle_knn(A, B) + cycle_knn(B, A)) / 2``. Symmetric, in [0, 1]."""
    return score_pair(CYCLE_KNN_BOTH, A, B, **knn_options(k, neighbors))


def cycle_knn_directions(A: object, B: object, k: int = 10) -> tuple[float, float]:
    """Both cycle-kNN directions from one pair of neighbour computations.

    Returns
    -------
    (ab, ba) : ``ab = cycle_knn(A, B)`` (i -> B-neighbours -> their A-neighbours back to i) and
        ``ba = cycle_knn(B, A)``. A large gap means the alignment is asymmetric (one representation's
        neighbourhoods are recoverable from the other's, not vice versa).
    """
    ta, tb = check_pair(A, B)
    k = _check_k_kwargs(ta.shape[0], k=k)["k"]
    ca, cb = _knn_cache(ta, k), _knn_cache(tb, k)
    return float(_cycle_grid([ca], [cb], k)[0, 0]), float(_cycle_grid([cb], [ca], k)[0, 0])


_COMMON = {**KNN_SPEC_FIELDS, "defaults": {"k": 10}}

JACCARD_KNN = register(
    MetricSpec(
        name="jaccard_knn",
        display_name="Jaccard kNN",
        properties=MetricProperties(
            definition="mean over samples of \\|N_A(i) ∩ N_B(i)\\| / \\|N_A(i) ∪ N_B(i)\\| (= s / (2k - s))",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="exact hypergeometric mean ≈ k / (2(N-1))",
            cost="O(N² D) per layer (neighbours), O(N k²) per pair",
            prefer="set-similarity convention of the retrieval literature; same ranking information as mutual_knn",
        ),
        func=jaccard_knn,
        grid=_jaccard_grid,
        symmetric=True,
        null_expectation=lambda n, kw: jaccard_null(n, kw.get("k", 10)),
        description="mean Jaccard index |N_A ∩ N_B| / |N_A ∪ N_B| of the k-neighbour sets",
        **_COMMON,
    )
)
CYCLE_KNN_BA = register(
    MetricSpec(
        name="cycle_knn_ba",
        display_name="cycle kNN (B to A)",
        properties=MetricProperties(
            definition="cycle_knn(B, A): fraction of samples i found among the B-neighbours of one of i's A-neighbours",
            value_range="[0, 1]",
            symmetric=False,
            identity=False,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="≈ 1 - (1 - k/(N-1))^k",
            cost="O(N² D) per layer (neighbours), O(N k²) per pair",
            prefer="the other direction of cycle_knn; a gap between the two shows asymmetric alignment",
        ),
        func=cycle_knn_ba,
        grid=_cycle_ba_grid,
        symmetric=False,
        null_expectation=_cycle_null,
        description="cycle kNN in the other direction: cycle_knn(B, A)",
        **_COMMON,
    )
)
CYCLE_KNN_BOTH = register(
    MetricSpec(
        name="cycle_knn_both",
        display_name="cycle kNN (both directions)",
        properties=MetricProperties(
            definition="(cycle_knn(A, B) + cycle_knn(B, A)) / 2",
            value_range="[0, 1]",
            symmetric=True,
            identity=False,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="≈ 1 - (1 - k/(N-1))^k",
            cost="O(N² D) per layer (neighbours), O(N k²) per pair",
            prefer="a symmetric cycle score for tables and heatmaps",
        ),
        func=cycle_knn_both,
        grid=_cycle_both_grid,
        symmetric=True,
        null_expectation=_cycle_null,
        description="mean of cycle_knn(A, B) and cycle_knn(B, A) (symmetric)",
        **_COMMON,
    )
)
