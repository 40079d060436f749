"""Neighbourhood metrics: mutual kNN, cycle kNN, LCS kNN and edit-distance kNN.

All four compare, sample by sample, the ordered lists of each sample's ``k`` nearest neighbours (inner product,
self excluded) in the two representations. They are invariant to any transformation that preserves inner-product
rankings (rotations, isotropic scaling) and to permuting the samples of both inputs alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from prh._validation import check_choice, check_k
from prh.metrics._common import score_pair
from prh.metrics.kernels import inner_products, map_grams, require_spread
from prh.metrics.neighbors import ROW_BLOCK, approximate_knn, knn_from_gram, knn_indices
from prh.metrics.null import NullEngine, inverse_permutation, permute_neighbors
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register
from prh.metrics.sequence_dp import edit_distance, lcs_length

#: Upper bound on the elements of one batched comparison tensor (layers x N x k x k).
_BATCH_ELEMENTS = 2**24
#: Upper bound (bytes) of the stacked neighbour-mask table of :class:`MaskGatherEngine`; more X layers are split.
MASK_TABLE_BYTES = 2**28
#: Upper bound on gathered index elements per batch of :class:`MaskGatherEngine` (B * Ly * N * k).
INDEX_ELEMENTS = 2**22


@dataclass(frozen=True)
class KnnCache:
    """Per-layer cache of the kNN metrics.

    knn : (N, k) int64 neighbour lists, most similar first.
    recall : for approximate lists (``neighbors="approximate"``), their measured recall against exact search on a
        sample of queries (:func:`prh.metrics.neighbors.approximate_knn`); None for exact lists.
    """

    knn: torch.Tensor
    recall: float | None = None


#: How neighbour lists are found: exact top-k (default) or FAISS HNSW with a measured recall.
NEIGHBORS = ("exact", "approximate")


def _check_k_kwargs(n: int, k: int = 10, neighbors: str = "exact") -> dict:
    """``{"k": k}``, plus ``"neighbors": "approximate"`` only when asked (exact is the default and stays implicit)."""
    neighbors = check_choice(neighbors, "neighbors", NEIGHBORS)
    return {"k": check_k(k, n)} | ({"neighbors": neighbors} if neighbors != "exact" else {})


def knn_options(k: object, neighbors: str) -> dict:
    """The options a public kNN function passes on: ``neighbors`` only when it is not the default."""
    return {"k": k, **({"neighbors": neighbors} if neighbors != "exact" else {})}


def _knn_cache(x: torch.Tensor, k: int, neighbors: str = "exact") -> KnnCache:
    """The (N, k) neighbour lists of one layer; constant layers are refused (their neighbours are ties)."""
    if neighbors == "approximate":
        require_spread(x)
        knn, recall = approximate_knn(x, k)
        return KnnCache(knn, recall)
    if x.shape[0] > ROW_BLOCK:  # blocked top-k, no (N, N) matrix
        require_spread(x)
        return KnnCache(knn_indices(x, k))
    return _from_gram(x, inner_products(x), k)


def _from_gram(x: torch.Tensor, gram: torch.Tensor, k: int) -> KnnCache:
    require_spread(x, gram)
    return KnnCache(knn_from_gram(gram, k, overwrite=True))


def _knn_caches(layers: Sequence[torch.Tensor], k: int, neighbors: str = "exact") -> list[KnnCache]:
    """:func:`_knn_cache` of every layer; Gram matrices chunk-first when one fits in a row block."""
    if neighbors != "exact" or layers[0].shape[0] > ROW_BLOCK:
        return [_knn_cache(x, k, neighbors) for x in layers]
    return map_grams(layers, lambda x, gram: _from_gram(x, gram, k))


def _permute_knn(cache: KnnCache, perm: torch.Tensor, inv: torch.Tensor) -> KnnCache:
    """The cache of ``Y[perm]``: the old neighbours of ``perm[i]``, renamed (``inv[knn[perm]]``)."""
    return KnnCache(permute_neighbors(cache.knn, perm, inv), cache.recall)


def _knn_gram_cache(gram: torch.Tensor, k: int, neighbors: str = "exact") -> KnnCache | None:
    """The cache of a layer from its (N, N) inner products (e.g. a row subset of a stored Gram matrix).

    Used for row subsamples of a layer whose full cache was built (and its spread checked) first. None for
    approximate lists, which must come from the features (the caller then builds them from the rows).
    """
    if neighbors != "exact":
        return None
    return KnnCache(knn_from_gram(gram, k))


def _cache_info(cache: KnnCache) -> dict:
    """What a sweep reports next to its scores: the measured recall of approximate neighbour lists."""
    return {} if cache.recall is None else {"recall": cache.recall}


def _chunks(caches: Sequence[KnnCache], per_item: int):
    """Yield (start, stacked (c, N, k) neighbour lists) in chunks that bound the batch to _BATCH_ELEMENTS."""
    size = max(1, _BATCH_ELEMENTS // max(per_item, 1))
    for start in range(0, len(caches), size):
        yield start, torch.stack([c.knn for c in caches[start : start + size]])


def _mutual_grid(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int, **_: object) -> torch.Tensor:
    """Fraction of shared neighbours, averaged over samples: mean_i |N_A(i) ∩ N_B(i)| / k.

    Each X layer's neighbour lists become a table of the N x N (item, neighbour) pairs, and each Y layer's lists
    look their pairs up in it: O(N k) per layer pair instead of comparing k x k candidates. The per-item counts are
    the same integers as the direct comparison (neighbour lists hold distinct items), so the scores are identical.
    """
    n = xs[0].knn.shape[0]
    if n * n <= _BATCH_ELEMENTS and all(bool((c.knn >= 0).all()) for c in (*xs, *ys)):
        return _mutual_grid_table(xs, ys, k)
    return _mutual_grid_direct(xs, ys, k)


def _mutual_grid_table(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int) -> torch.Tensor:
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    n = xs[0].knn.shape[0]
    device = xs[0].knn.device
    rows = (torch.arange(n, device=device) * n).view(n, 1)
    table = torch.zeros(n * n, dtype=torch.uint8, device=device)
    for start, ys_knn in _chunks(ys, n * k):
        pairs = (ys_knn + rows).reshape(-1)  # (c * N * k,) flat (item, neighbour) indices of each Y layer
        c = ys_knn.shape[0]
        for i, cx in enumerate(xs):
            mine = (cx.knn + rows).reshape(-1)
            table[mine] = 1
            shared = table[pairs].view(c, n, k).sum(dim=2)
            table[mine] = 0
            grid[i, start : start + c] = shared.double().mean(dim=1).cpu() / k
    return grid


def _mutual_grid_direct(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int) -> torch.Tensor:
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    n = xs[0].knn.shape[0]
    for start, ys_knn in _chunks(ys, n * k * k):
        for i, cx in enumerate(xs):
            shared = (cx.knn[None, :, :, None] == ys_knn[:, :, None, :]).sum(dim=(2, 3))
            grid[i, start : start + ys_knn.shape[0]] = shared.double().mean(dim=1).cpu() / k
    return grid


def _cycle_grid(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int, **_: object) -> torch.Tensor:
    """Fraction of samples i found among the A-neighbours of i's B-neighbours (A = x layer, B = y layer)."""
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    n = xs[0].knn.shape[0]
    own = torch.arange(n, device=xs[0].knn.device).view(1, n, 1, 1)
    for start, ys_knn in _chunks(ys, n * k * k):
        for i, cx in enumerate(xs):
            back = cx.knn[ys_knn]  # (c, N, k, k): A-neighbours of each B-neighbour
            found = (back == own).flatten(2).any(dim=2)
            grid[i, start : start + ys_knn.shape[0]] = found.double().mean(dim=1).cpu()
    return grid


def _sequence_grid(xs: Sequence[KnnCache], ys: Sequence[KnnCache], k: int, kind: str) -> torch.Tensor:
    """Mean over samples of LCS length / k, or of 1 - edit distance / k, of the ordered neighbour lists."""
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    n = xs[0].knn.shape[0]
    for start, ys_knn in _chunks(ys, n * k * k):
        c = ys_knn.shape[0]
        for i, cx in enumerate(xs):
            left = cx.knn.repeat(c, 1)
            right = ys_knn.reshape(c * n, k)
            if kind == "lcs":
                per_sample = lcs_length(left, right).double() / k
            else:
                per_sample = 1.0 - edit_distance(left, right).double() / k
            grid[i, start : start + c] = per_sample.view(c, n).mean(dim=1).cpu()
    return grid


def mutual_knn(A: object, B: object, k: int = 10, neighbors: str = "exact") -> float:
    """Mutual k-nearest-neighbour alignment (the paper's main metric).

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays; row i of both describes the same item.
        Used as given (apply :func:`prh.prepare` first for the paper's preprocessing).
    k : neighbours per sample, ``1 <= k < N``.
    neighbors : ``"exact"`` (default) or ``"approximate"`` (FAISS HNSW, for very large N; a sweep reports the
        measured recall of the lists in ``Sweep.diagnostics``). Every kNN metric takes this option.

    Returns
    -------
    float in [0, 1]: mean over samples of |kNN_A(i) ∩ kNN_B(i)| / k. 1 for identical neighbourhoods;
    k/(N-1) expected for independent representations. Symmetric.
    """
    return score_pair(MUTUAL_KNN, A, B, **knn_options(k, neighbors))


def cycle_knn(A: object, B: object, k: int = 10, neighbors: str = "exact") -> float:
    """Cycle kNN: fraction of samples i that are among the A-neighbours of one of their B-neighbours.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) arrays, same N.
    k : neighbours, ``1 <= k < N``.

    Returns
    -------
    float in [0, 1]. Not symmetric (B -> A -> back to i), and not 1 for identical inputs in general: sample i is
    recovered only if it is itself a neighbour of one of its neighbours (kNN relations are not symmetric).
    """
    return score_pair(CYCLE_KNN, A, B, **knn_options(k, neighbors))


def lcs_knn(A: object, B: object, k: int = 10, neighbors: str = "exact") -> float:
    """Longest-common-subsequence kNN: mean LCS length of the ordered neighbour lists, divided by k.

    Returns a float in [0, 1] (the reference returns 0..k as a tensor); 1 for identical inputs. Symmetric.
    """
    return score_pair(LCS_KNN, A, B, **knn_options(k, neighbors))


def edit_distance_knn(A: object, B: object, k: int = 10, neighbors: str = "exact") -> float:
    """Edit-distance kNN: 1 - mean Levenshtein distance between the ordered neighbour lists / k.

    Returns a float in [0, 1]; 1 for identical inputs. Symmetric.
    """
    return score_pair(EDIT_DISTANCE_KNN, A, B, **knn_options(k, neighbors))


def _cycle_null(n: int, kw: dict) -> float:
    k = kw.get("k", 10)
    return 1.0 - (1.0 - k / (n - 1)) ** k


class MaskGatherEngine(NullEngine):
    """Null grids of ``mutual_knn`` (``mode="sum"``) or ``cycle_knn`` (``mode="max"``) from neighbour masks.

    X's neighbour masks of all layers are stacked once into an (N*N, Lx) 0/1 table; the permuted neighbour lists
    of each Y layer become flat indices and one ``embedding_bag`` gathers and sums (or maxes) the table rows:
    O(B * Ly * N * k * Lx) per batch of B permutations, no sorting and no (N, N) work per permutation.

    mutual: ``grid[i, j] = sum_a |knn_i[a] ∩ knn'_j[a]| / (N k)``, with ``knn'_j`` the permuted Y neighbours;
    the table holds ``T[a*N + b, i] = 1`` iff ``b ∈ knn_i[a]`` and each (perm, Y layer) is one bag of N*k rows.
    cycle: sample a counts when ``a ∈ knn_i[b]`` for some ``b ∈ knn'_j[a]``; the table holds the transposed masks
    ``T[a*N + b, i] = 1`` iff ``a ∈ knn_i[b]`` and each (perm, Y layer, a) is a bag of k rows reduced by max.
    """

    def __init__(self, xs: Sequence[KnnCache], ys: Sequence[KnnCache], mode: str) -> None:
        self.mode = mode
        self.n, self.k = xs[0].knn.shape
        self.device = xs[0].knn.device
        self.lx, self.ly = len(xs), len(ys)
        self.ky = torch.stack([c.knn for c in ys])  # (Ly, N, k)
        n = self.n
        step = max(1, MASK_TABLE_BYTES // (n * n * 4))
        self.tables: list[tuple[int, torch.Tensor]] = []
        for start in range(0, self.lx, step):
            chunk = xs[start : start + step]
            table = torch.zeros((n, n, len(chunk)), dtype=torch.float32, device=self.device)
            for c, cache in enumerate(chunk):
                mask = torch.zeros((n, n), dtype=torch.float32, device=self.device)
                mask.scatter_(1, cache.knn, 1.0)
                table[:, :, c] = mask if mode == "sum" else mask.T
            self.tables.append((start, table.view(n * n, len(chunk))))
        self.batch_size = max(1, INDEX_ELEMENTS // max(1, self.ly * n * self.k))
        self._rows = (torch.arange(n, device=self.device) * n).view(1, 1, n, 1)

    @classmethod
    def factory(cls, mode: str):
        """``null_engine`` of a MetricSpec: the engine, or None when one X layer's table exceeds the budget."""

        def make(xs: Sequence[KnnCache], ys: Sequence[KnnCache], params: dict) -> MaskGatherEngine | None:
            n = xs[0].knn.shape[0]
            return cls(xs, ys, mode) if n * n * 4 <= MASK_TABLE_BYTES else None

        return make

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        perms = perms.to(self.device)
        b, n, k = perms.shape[0], self.n, self.k
        inv = inverse_permutation(perms)
        # permuted neighbours of new row a in Y layer j: inv[perm[a]'s old neighbours] -> flat index a*N + b'
        idx = self.ky[:, perms]  # (Ly, B, N, k) old neighbours of perm[a]
        idx += (torch.arange(b, device=self.device) * n).view(1, b, 1, 1)
        idx = inv.reshape(-1)[idx]  # renamed to new row numbers
        idx += self._rows  # (Ly, B, N, k) flat indices a*N + b'
        out = torch.empty((b, self.lx, self.ly), dtype=torch.float64)
        for start, table in self.tables:
            width = table.shape[1]
            if self.mode == "sum":
                counts = F.embedding_bag(idx.reshape(self.ly * b, n * k), table, mode="sum")
                scores = counts.double().view(self.ly, b, width) / (n * k)
            else:
                found = F.embedding_bag(idx.reshape(self.ly * b * n, k), table, mode="max")
                scores = found.double().view(self.ly, b, n, width).sum(dim=2) / n
            out[:, start : start + width, :] = scores.permute(1, 2, 0).cpu()
        return out


#: MetricSpec fields shared by every neighbour-list metric (here and in :mod:`prh.metrics.knn_sets`).
KNN_SPEC_FIELDS = {
    "layer_cache": _knn_cache,
    "layer_caches": _knn_caches,
    "permute_cache": _permute_knn,
    "gram_cache": _knn_gram_cache,
    "cache_info": _cache_info,
    "check_kwargs": _check_k_kwargs,
    "value_range": (0.0, 1.0),
    "uses_k": True,
    "scale_free": any_scale,  # neighbours by inner product: the same for c * x
}

MUTUAL_KNN = register(
    MetricSpec(
        name="mutual_knn",
        display_name="mutual kNN",
        properties=MetricProperties(
            definition="mean over samples of \\|N_A(i) ∩ N_B(i)\\| / k (k nearest neighbours by inner product, self excluded)",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="k / (N-1)",
            cost="O(N² D) per layer (neighbours), O(N k²) per pair",
            prefer="the paper's headline metric; local structure, robust to a few outliers; compare across k",
        ),
        func=mutual_knn,
        grid=_mutual_grid,
        symmetric=True,
        null_expectation=lambda n, kw: kw.get("k", 10) / (n - 1),
        description="mean fraction of shared k nearest neighbours (the paper's metric)",
        defaults={"k": 10},
        null_engine=MaskGatherEngine.factory("sum"),
        **KNN_SPEC_FIELDS,
    )
)
CYCLE_KNN = register(
    MetricSpec(
        name="cycle_knn",
        display_name="cycle kNN",
        properties=MetricProperties(
            definition="fraction of samples i found among the A-neighbours of one of i's B-neighbours",
            value_range="[0, 1]",
            symmetric=False,
            identity=False,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="≈ 1 - (1 - k/(N-1))^k",
            cost="O(N² D) per layer (neighbours), O(N k²) per pair",
            prefer="asymmetric question: can A's neighbourhoods be recovered through B? report with cycle_knn_ba",
        ),
        func=cycle_knn,
        grid=_cycle_grid,
        symmetric=False,
        null_expectation=_cycle_null,
        description="fraction of samples recovered by going to B-neighbours and back through A-neighbours",
        defaults={"k": 10},
        null_engine=MaskGatherEngine.factory("max"),
        **KNN_SPEC_FIELDS,
    )
)
LCS_KNN = register(
    MetricSpec(
        name="lcs_knn",
        display_name="LCS kNN",
        properties=MetricProperties(
            definition="mean longest common subsequence of the ordered neighbour lists, / k",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="small, > 0 (no closed form)",
            cost="O(N² D) per layer, O(N k²) per pair",
            prefer="when the order of neighbours matters, not only membership",
        ),
        func=lcs_knn,
        grid=lambda xs, ys, k, **_: _sequence_grid(xs, ys, k, "lcs"),
        symmetric=True,
        description="longest common subsequence of the ordered neighbour lists / k",
        defaults={"k": 10},
        **KNN_SPEC_FIELDS,
    )
)
EDIT_DISTANCE_KNN = register(
    MetricSpec(
        name="edit_distance_knn",
        display_name="edit-distance kNN",
        properties=MetricProperties(
            definition="1 - mean Levenshtein distance between the ordered neighbour lists / k",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="small, > 0 (no closed form)",
            cost="O(N² D) per layer, O(N k²) per pair",
            prefer="like lcs_knn, penalising insertions and substitutions",
        ),
        func=edit_distance_knn,
        grid=lambda xs, ys, k, **_: _sequence_grid(xs, ys, k, "edit"),
        symmetric=True,
        description="1 - Levenshtein distance between the ordered neighbour lists / k",
        defaults={"k": 10},
        **KNN_SPEC_FIELDS,
    )
)
