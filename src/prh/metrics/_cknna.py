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
from prh.metrics.registry import MetricSpec, register

#: Upper bound (bytes) of :class:`NeighborKernelEngine`'s (N*N, Ly) table of Y's masked Gram values.
TABLE_BYTES = 2**30
#: Upper bound on the elements of one vectorised null step (X layers x Ly x N x k).
NEIGHBOR_ELEMENTS = 2**22


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
    if unbiased:
        return (
            trace_pq + sum_p * sum_q / ((n - 1) * (n - 2)) - 2.0 * (col_p * row_q).sum(dim=1) / (n - 2)
        ) / (n * (n - 3))
    col_q = torch.zeros_like(col_p).scatter_add_(1, index, q_vals.reshape(c, n * k, width))
    return trace_pq - ((col_q * row_p).sum(dim=1) + (col_p * row_q).sum(dim=1)) / n + sum_p * sum_q / n**2


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
    """Null grids of CKNNA from gathers into Y's stacked (N*N, Ly) masked Gram values.

    The masked HSIC of (X_i, Y_j) reads Y only at the positions (r, c) and (c, r) with c a neighbour of r in X_i.
    Under a permutation π, Y_j's permuted mask / Gram at (u, v) is the stored one at (π u, π v), so for each
    permutation and X layer the N*k flat positions are computed once and read from all Y layers at once:
    O(Lx * Ly * N * k) per permutation. The HSIC itself is :func:`_hsic_from_lists`, as in the metric.
    """

    def __init__(self, xs: Sequence[NeighborKernel], ys: Sequence[NeighborKernel], params: dict) -> None:
        self.n, self.k = xs[0].knn.shape
        self.device = xs[0].knn.device
        self.lx, self.ly = len(xs), len(ys)
        self.unbiased, self.agnostic = params["unbiased"], params["distance_agnostic"]
        n = self.n
        # one (N*N, Ly) table: Y_j's Gram value where (u, v) is a Y_j-neighbour pair, NaN elsewhere, so a single
        # row gather gives both the mask (finite) and the kernel value for all Y layers at once
        table = torch.full((n, n, self.ly), float("nan"), dtype=ys[0].gram.dtype, device=self.device)
        for j, c in enumerate(ys):
            mask = torch.zeros((n, n), dtype=torch.bool, device=self.device).scatter_(1, c.knn, True)
            table[:, :, j] = torch.where(mask, c.gram, torch.full_like(c.gram, float("nan")))
        self.table = table.view(n * n, self.ly)
        self.self_y = torch.tensor([c.self_similarity for c in ys], dtype=torch.float64)
        self.self_x = torch.tensor([c.self_similarity for c in xs], dtype=torch.float64)
        self.knn = torch.stack([c.knn for c in xs])  # (Lx, N, k)
        self.reverse = torch.stack([c.reverse for c in xs])[..., None]  # (Lx, N, k, 1)
        self.values = torch.stack([c.values for c in xs])[..., None]  # (Lx, N, k, 1) float64
        self.rows = torch.arange(n, device=self.device)[:, None].expand(n, self.k)
        self.chunk = max(1, NEIGHBOR_ELEMENTS // (self.ly * n * self.k))  # X layers per vectorised step
        self.batch_size = 4

    @classmethod
    def make(
        cls, xs: Sequence[NeighborKernel], ys: Sequence[NeighborKernel], params: dict
    ) -> NeighborKernelEngine | None:
        """``null_engine`` of the spec: the engine, or None when Y's (N*N, Ly) table exceeds :data:`TABLE_BYTES`."""
        n = xs[0].knn.shape[0]
        if n * n * len(ys) * ys[0].gram.element_size() > TABLE_BYTES:
            return None
        for side, caches in (("A", xs), ("B", ys)):
            for idx, c in enumerate(caches):
                require_positive(c.self_similarity, f"masked HSIC({side}, {side}) of layer {idx}")
        return cls(xs, ys, params)

    def _hsic(self, layers: slice, perm: torch.Tensor) -> torch.Tensor:
        """(c, Ly) masked HSIC of the X layers ``layers`` with every Y layer permuted by ``perm``."""
        n, ly, k = self.n, self.ly, self.k
        knn = self.knn[layers]  # (c, N, k)
        c = knn.shape[0]
        u, v = perm[self.rows], perm[knn]  # stored coordinates of (r, knn[r, s]) under the permutation
        # layout (c, N, k, Ly): rows of the table are contiguous over Y layers
        fwd = self.table.index_select(0, (u * n + v).reshape(-1)).view(c, n, k, ly)
        bwd = self.table.index_select(0, (v * n + u).reshape(-1)).view(c, n, k, ly)
        shared = torch.isfinite(fwd)
        transposed = shared & self.reverse[layers] & torch.isfinite(bwd)
        if self.agnostic:
            p_vals = shared.double()
            q_vals = p_vals
            q_transposed = transposed.double()
        else:
            p_vals = shared * self.values[layers]
            q_vals = torch.nan_to_num(fwd.double(), nan=0.0)
            q_transposed = transposed * torch.nan_to_num(bwd.double(), nan=0.0)
        return _hsic_from_lists(p_vals, q_vals, q_transposed, knn, self.unbiased)

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        perms = perms.to(self.device)
        out = torch.empty((perms.shape[0], self.lx, self.ly), dtype=torch.float64)
        norm = (self.self_x[:, None] * self.self_y[None, :]).sqrt()
        for b, perm in enumerate(perms):
            for start in range(0, self.lx, self.chunk):
                layers = slice(start, start + self.chunk)
                out[b, layers] = self._hsic(layers, perm).cpu() / norm[layers]
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
