"""CKNNA: centred kernel nearest-neighbour alignment (Huh et al. 2024, Eq. in Appendix A).

CKA restricted to mutual nearest neighbours: HSIC is computed on the kernels masked to the pairs (i, j) where j is
among the k nearest neighbours of i in *both* representations, normalised by the same quantity of each side
with itself. Since each row of the mask has at most k entries, every HSIC term is computed from the (N, k)
neighbour lists in O(N k^2) instead of dense (N, N) products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh._validation import check_k
from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.kernels import gram, map_grams, require_positive, require_spread
from prh.metrics.neighbors import knn_from_gram
from prh.metrics.null import NullEngine, permute_neighbors, permute_square
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register

#: Upper bound (bytes) of :class:`NeighborKernelEngine`'s tables of Y: the (Ly, N*N) Grams and the bit tables.
TABLE_BYTES = 2**30
#: Upper bound on the shared pairs of one null step in the worst case (X layers x Ly x N x k).
NEIGHBOR_ELEMENTS = 2**22
#: Y layers per int64 bit table of :class:`NeighborKernelEngine` (bits 0..62; the sign bit stays unused).
WORD_LAYERS = 63
_BIT_TYPES = ((torch.int16, 15), (torch.int32, 31), (torch.int64, 63))


@dataclass(frozen=True)
class NeighborKernel:
    """Per-layer cache of CKNNA.

    gram : (N, N) inner products (input dtype).
    knn : (N, k) neighbour lists (self excluded when unbiased).
    values : (N, k) float64, ``gram[r, knn[r, s]]``.
    reverse : (N, k) bool, whether r is itself a neighbour of its neighbour ``knn[r, s]``.
    self_similarity : the masked HSIC of the layer with itself.
    """

    gram: torch.Tensor
    knn: torch.Tensor
    values: torch.Tensor
    reverse: torch.Tensor
    self_similarity: float


def _check_cknna_kwargs(n: int, k: int = 10, unbiased: bool = True, distance_agnostic: bool = False) -> dict:
    if unbiased and n < 4:
        raise InputError(
            f"cknna's unbiased HSIC needs at least N=4 samples, got N={n}; use unbiased=False or more data."
        )
    return {
        "k": check_k(k, n, minimum=2),
        "unbiased": bool(unbiased),
        "distance_agnostic": bool(distance_agnostic),
    }


def _hsic_from_lists(
    p_vals: torch.Tensor, q_vals: torch.Tensor, q_transposed: torch.Tensor, knn: torch.Tensor, unbiased: bool
) -> torch.Tensor:
    """HSIC of two kernels P, Q that are non-zero only at neighbour positions, from their (N, k) lists.

    The one masked-HSIC formula of CKNNA, used by the metric and by its permutation null engine alike.

    Parameters
    ----------
    p_vals, q_vals : (c, N, k, L) float64, ``P[r, knn[r, s]]`` and ``Q[r, knn[r, s]]`` (zero off the mask).
    q_transposed : (c, N, k, L) float64, ``Q[knn[r, s], r]``.
    knn : (c, N, k) int64 positions of the non-zeros of row r (the mask is a subset of them).
    unbiased : Song et al.'s unbiased estimator (N >= 4) or the biased ``tr(P H Q H)``.

    Returns
    -------
    (c, L) float64.
    """
    c, n, k, width = p_vals.shape
    trace_pq = (p_vals * q_transposed).sum(dim=(1, 2))  # (c, L)
    sum_p, sum_q = p_vals.sum(dim=(1, 2)), q_vals.sum(dim=(1, 2))
    row_p, row_q = p_vals.sum(dim=2), q_vals.sum(dim=2)  # (c, N, L)
    index = knn.reshape(c, n * k, 1).expand(c, n * k, width)
    col_p = torch.zeros((c, n, width), dtype=torch.float64, device=p_vals.device)
    col_p.scatter_add_(1, index, p_vals.reshape(c, n * k, width))
    cross_pq = (col_p * row_q).sum(dim=1)
    if unbiased:
        return _combine(n, trace_pq, sum_p, sum_q, cross_pq)
    col_q = torch.zeros_like(col_p).scatter_add_(1, index, q_vals.reshape(c, n * k, width))
    return _combine(n, trace_pq, sum_p, sum_q, cross_pq, (col_q * row_p).sum(dim=1))


def _combine(
    n: int,
    trace_pq: torch.Tensor,
    sum_p: torch.Tensor,
    sum_q: torch.Tensor,
    cross_pq: torch.Tensor,
    cross_qp: torch.Tensor | None = None,
) -> torch.Tensor:
    """HSIC from the reductions of the masked kernels P, Q (N samples): ``tr(P Q)``, ``1^T P 1``, ``1^T Q 1``,
    ``(P^T 1)^T (Q 1)`` and, for the biased estimator, ``(Q^T 1)^T (P 1)``. Unbiased when ``cross_qp`` is None."""
    if cross_qp is None:
        return (trace_pq + sum_p * sum_q / ((n - 1) * (n - 2)) - 2.0 * cross_pq / (n - 2)) / (n * (n - 3))
    return trace_pq - (cross_qp + cross_pq) / n + sum_p * sum_q / n**2


def _masked_hsic(a: NeighborKernel, b: NeighborKernel, unbiased: bool, distance_agnostic: bool) -> float:
    """HSIC(M∘K_a, M∘K_b) with M = mask_a ∘ mask_b, from the neighbour lists of ``a`` (float64)."""
    n, _ = a.knn.shape
    rows = torch.arange(n, device=a.knn.device)
    shared = (a.knn[:, :, None] == b.knn[:, None, :]).any(dim=2)  # M[r, c] for c = a.knn[r, s]
    back_b = (b.knn[a.knn] == rows[:, None, None]).any(dim=2)  # r in knn_b[c]
    transposed = shared & a.reverse & back_b  # M[c, r]
    if distance_agnostic:
        p_vals = shared.double()
        q_vals = p_vals
        q_transposed = transposed.double()
    else:
        p_vals = shared * a.values
        q_vals = shared * torch.gather(b.gram, 1, a.knn).double()
        q_transposed = transposed * b.gram[a.knn, rows[:, None]].double()
    one = (p_vals[None, ..., None], q_vals[None, ..., None], q_transposed[None, ..., None])
    return float(_hsic_from_lists(*one, a.knn[None], unbiased)[0, 0])


def _cknna_cache(x: torch.Tensor, k: int, unbiased: bool, distance_agnostic: bool) -> NeighborKernel:
    return _neighbor_kernel(x, gram(x), k, unbiased, distance_agnostic)


def _cknna_caches(
    layers: Sequence[torch.Tensor], k: int, unbiased: bool, distance_agnostic: bool
) -> list[NeighborKernel]:
    return map_grams(layers, lambda x, g: _neighbor_kernel(x, g, k, unbiased, distance_agnostic))


def _neighbor_kernel(
    x: torch.Tensor, g: torch.Tensor, k: int, unbiased: bool, distance_agnostic: bool
) -> NeighborKernel:
    require_spread(x, g)
    knn = knn_from_gram(g, k, exclude_self=unbiased)
    rows = torch.arange(x.shape[0], device=x.device)
    reverse = (knn[knn] == rows[:, None, None]).any(dim=2)
    values = torch.gather(g, 1, knn).double()
    partial = NeighborKernel(g, knn, values, reverse, 0.0)
    return NeighborKernel(
        g, knn, values, reverse, _masked_hsic(partial, partial, unbiased, distance_agnostic)
    )


def _cknna_grid(
    xs: Sequence[NeighborKernel],
    ys: Sequence[NeighborKernel],
    k: int,
    unbiased: bool,
    distance_agnostic: bool,
) -> torch.Tensor:
    for side, caches in (("A", xs), ("B", ys)):
        for idx, c in enumerate(caches):
            require_positive(c.self_similarity, f"masked HSIC({side}, {side}) of layer {idx}")
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            cross = _masked_hsic(a, b, unbiased, distance_agnostic)
            grid[i, j] = cross / (a.self_similarity * b.self_similarity) ** 0.5
    return grid


def _permute_neighbor_kernel(cache: NeighborKernel, perm: torch.Tensor, inv: torch.Tensor) -> NeighborKernel:
    """The cache of ``Y[perm]``: Gram re-indexed on both axes, lists renamed, per-row values and flags by rows."""
    return NeighborKernel(
        gram=permute_square(cache.gram, perm),
        knn=permute_neighbors(cache.knn, perm, inv),
        values=cache.values.index_select(0, perm),
        reverse=cache.reverse.index_select(0, perm),
        self_similarity=cache.self_similarity,
    )


class NeighborKernelEngine(NullEngine):
    """Null grids of CKNNA from Y's neighbour pairs stored as bit sets, visiting only the shared pairs.

    The masked HSIC of (X_i, Y_j) is a sum over the positions (r, c) with c a neighbour of r in X_i *and* in Y_j;
    under a permutation π, Y_j's mask and Gram at (r, c) are the stored ones at (π r, π c). Y's masks are stored
    as one (N*N,) int64 table whose bit j says "(u, v) is a neighbour pair of Y layer j" (up to
    :data:`WORD_LAYERS` layers per table), and its Grams as one (Ly, N*N) table. For each permutation and X layer
    the N*k positions are looked up once in the bit table; only the set bits (the shared pairs, about k^2 per
    layer pair for unrelated data instead of N*k) are expanded, and the five reductions of the masked HSIC
    (``tr(PQ)``, the two totals and the row/column products, see :func:`_combine`) are accumulated for all layer
    pairs at once with ``index_add_``. The HSIC formula is the metric's own (:func:`_combine`).
    """

    def __init__(self, xs: Sequence[NeighborKernel], ys: Sequence[NeighborKernel], params: dict) -> None:
        self.n, self.k = n, k = xs[0].knn.shape
        self.device = xs[0].knn.device
        self.lx, self.ly = len(xs), len(ys)
        self.unbiased, self.agnostic = params["unbiased"], params["distance_agnostic"]
        rows = torch.arange(n, device=self.device)[:, None].expand(n, k)
        self.words = []  # (first Y layer, number of layers, (N*N,) bit table)
        for start in range(0, self.ly, WORD_LAYERS):
            group = ys[start : start + WORD_LAYERS]
            # the smallest integer type that holds the group's bits (a smaller table stays in cache)
            dtype = next(t for t, bits in _BIT_TYPES if len(group) <= bits)
            table = torch.zeros(n * n, dtype=dtype, device=self.device)
            for bit, c in enumerate(group):
                flat = (rows * n + c.knn).reshape(-1)  # distinct positions: one bit per pair
                table[flat] |= 1 << bit
            self.words.append((start, len(group), table))
        self.gram = torch.stack([c.gram.reshape(-1) for c in ys]).reshape(-1)  # (Ly * N * N,), input dtype
        self.rows = rows.reshape(-1)  # (N * k,) r of each list position (r, s)
        self.knn_flat = torch.stack([c.knn for c in xs]).reshape(-1)  # (Lx * N * k,)
        self.values = torch.stack([c.values for c in xs]).reshape(-1)  # (Lx * N * k,) float64
        self.reverse = torch.stack([c.reverse for c in xs]).reshape(-1)  # (Lx * N * k,) bool
        self.self_x = torch.tensor([c.self_similarity for c in xs], dtype=torch.float64)
        self.self_y = torch.tensor([c.self_similarity for c in ys], dtype=torch.float64)
        self.chunk = max(1, NEIGHBOR_ELEMENTS // (self.ly * n * k))  # X layers per step (dense worst case)
        self.batch_size = 8

    @classmethod
    def make(
        cls, xs: Sequence[NeighborKernel], ys: Sequence[NeighborKernel], params: dict
    ) -> NeighborKernelEngine | None:
        """``null_engine`` of the spec: the engine, or None when Y's tables exceed :data:`TABLE_BYTES`."""
        n, ly = xs[0].knn.shape[0], len(ys)
        words = -(-ly // WORD_LAYERS)
        if n * n * (ly * ys[0].gram.element_size() + 8 * words) > TABLE_BYTES:
            return None
        for side, caches in (("A", xs), ("B", ys)):
            for idx, c in enumerate(caches):
                require_positive(c.self_similarity, f"masked HSIC({side}, {side}) of layer {idx}")
        return cls(xs, ys, params)

    def _hsic(self, first: int, count: int, perm: torch.Tensor) -> torch.Tensor:
        """(count, Ly) masked HSIC of X layers ``first .. first + count - 1`` with every Y layer permuted by ``perm``.

        Gathers use ``index_select`` (several times faster than advanced indexing for these sizes).
        """
        n, k, ly = self.n, self.k, self.ly
        nk = n * k
        # (c * N * k,): the neighbour c of each (X layer, r, s); (N * k,): the stored row of r under the permutation
        knn = self.knn_flat[first * nk : (first + count) * nk]
        u = perm.index_select(0, self.rows) * n  # times N
        v = perm.index_select(0, knn)  # (c * N * k,) stored column
        fwd = (v.view(count, nk) + u).view(-1)
        pairs = count * ly
        sums = torch.zeros((3, pairs), dtype=torch.float64, device=self.device)  # tr(PQ), 1'P1, 1'Q1
        lines = torch.zeros((2 if self.unbiased else 4, pairs * n), dtype=torch.float64, device=self.device)
        for start, width, table in self.words:
            hits = table.index_select(0, fwd)
            entry = hits.nonzero().squeeze(1)
            shifts = torch.arange(width, device=self.device, dtype=table.dtype)
            which, bit = ((hits.index_select(0, entry)[:, None] >> shifts) & 1).nonzero(as_tuple=True)
            entry = entry.index_select(0, which)  # one item per shared (position, Y layer)
            local = entry % nk  # (r, s) of the item
            layer = bit + start
            pair = (entry // nk) * ly + layer  # (X layer in chunk, Y layer)
            bwd = v.index_select(0, entry) * n + u.index_select(0, local) // n
            back = (table.index_select(0, bwd) >> bit.to(table.dtype)) & 1
            back = back.bool() & self.reverse.index_select(0, first * nk + entry)  # M[c, r]
            if self.agnostic:
                p = torch.ones(entry.shape, dtype=torch.float64, device=self.device)
                q, qt = p, back.double()
            else:
                p = self.values.index_select(0, first * nk + entry)
                q = self.gram.index_select(0, layer * (n * n) + fwd.index_select(0, entry)).double()
                qt = torch.where(back, self.gram.index_select(0, layer * (n * n) + bwd).double(), 0.0)
            row = pair * n + local // k  # (pair, r)
            col = pair * n + knn.index_select(0, entry)  # (pair, c)
            sums[0].index_add_(0, pair, p * qt)
            sums[1].index_add_(0, pair, p)
            sums[2].index_add_(0, pair, q)
            lines[0].index_add_(0, col, p)  # column sums of P
            lines[1].index_add_(0, row, q)  # row sums of Q
            if not self.unbiased:
                lines[2].index_add_(0, col, q)
                lines[3].index_add_(0, row, p)
        cross = (lines[0] * lines[1]).view(pairs, n).sum(dim=1)
        cross_qp = None if self.unbiased else (lines[2] * lines[3]).view(pairs, n).sum(dim=1)
        return _combine(n, sums[0], sums[1], sums[2], cross, cross_qp).view(count, ly)

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        perms = perms.to(self.device)
        out = torch.empty((perms.shape[0], self.lx, self.ly), dtype=torch.float64)
        norm = (self.self_x[:, None] * self.self_y[None, :]).sqrt()
        for b, perm in enumerate(perms):
            for first in range(0, self.lx, self.chunk):
                count = min(self.chunk, self.lx - first)
                out[b, first : first + count] = (
                    self._hsic(first, count, perm).cpu() / norm[first : first + count]
                )
        return out


def cknna(A: object, B: object, k: int = 10, unbiased: bool = True, distance_agnostic: bool = False) -> float:
    """Centred kernel nearest-neighbour alignment.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) arrays, same N, used as given.
    k : neighbours, ``2 <= k < N``.
    unbiased : unbiased HSIC on the masked kernels, self excluded from the neighbours (default, as the paper).
    distance_agnostic : replace the kernel values inside the mask by 1 (HSIC of the neighbour masks alone).
        Crashes in the reference; defined here so that only the neighbourhood structure counts.

    Returns
    -------
    float, 1 for identical inputs, near 0 for independent ones. Not exactly symmetric: the masked kernels are not
    symmetric matrices, so one HSIC term changes when A and B swap (as in the reference; differences are small,
    e.g. 0.905 vs 0.895). No ``+1e-6`` denominator fudge;
    a non-positive self term raises :class:`~prh.errors.InputError`.
    """
    return score_pair(CKNNA, A, B, k=k, unbiased=unbiased, distance_agnostic=distance_agnostic)


CKNNA = register(
    MetricSpec(
        name="cknna",
        display_name="CKNNA",
        properties=MetricProperties(
            definition="unbiased HSIC of the linear kernels masked to mutual k-neighbour pairs, normalised like CKA",
            value_range="≈ [-1, 1]",
            symmetric=False,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=NO,
            null="≈ 0",
            cost="O(N² D) per layer, O(N k²) per pair",
            prefer="the paper's bridge between CKA and mutual kNN: kernel values, but only among neighbours",
        ),
        func=cknna,
        layer_cache=_cknna_cache,
        layer_caches=_cknna_caches,
        grid=_cknna_grid,
        check_kwargs=_check_cknna_kwargs,
        value_range=(-1.0, 1.0),
        symmetric=False,
        uses_k=True,
        scale_free=any_scale,
        description="CKA restricted to mutual k nearest neighbours (unbiased HSIC)",
        defaults={"k": 10, "unbiased": True, "distance_agnostic": False},
        permute_cache=_permute_neighbor_kernel,
        null_engine=NeighborKernelEngine.make,
        cache_bytes=lambda n, d, params: 4.0 * n * n * 2 + 24.0 * n * params["k"],
        memory_hint=(
            "cknna keeps an N x N Gram matrix per layer; use mutual_knn (blocked neighbours, bounded memory) or "
            "unbiased_cka (path='features') for large N, or fewer samples"
        ),
    )
)
