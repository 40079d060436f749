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
from prh.metrics._common import score_pair
from prh.metrics.kernels import gram, map_grams, require_positive
from prh.metrics.neighbors import knn_from_gram
from prh.metrics.registry import MetricSpec, register


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
    return {
        "k": check_k(k, n, minimum=2),
        "unbiased": bool(unbiased),
        "distance_agnostic": bool(distance_agnostic),
    }


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
    trace_pq = (p_vals * q_transposed).sum()
    sum_p, sum_q = p_vals.sum(), q_vals.sum()
    row_p, row_q = p_vals.sum(dim=1), q_vals.sum(dim=1)
    col_p = torch.zeros(n, dtype=torch.float64, device=a.knn.device).index_add_(
        0, a.knn.reshape(-1), p_vals.reshape(-1)
    )
    if unbiased:
        value = (trace_pq + sum_p * sum_q / ((n - 1) * (n - 2)) - 2.0 * (col_p @ row_q) / (n - 2)) / (
            n * (n - 3)
        )
    else:
        col_q = torch.zeros_like(col_p).index_add_(0, a.knn.reshape(-1), q_vals.reshape(-1))
        value = trace_pq - (col_q @ row_p + col_p @ row_q) / n + sum_p * sum_q / n**2
    return float(value)


def _cknna_cache(x: torch.Tensor, k: int, unbiased: bool, distance_agnostic: bool) -> NeighborKernel:
    return _neighbor_kernel(x, gram(x), k, unbiased, distance_agnostic)


def _cknna_caches(
    layers: Sequence[torch.Tensor], k: int, unbiased: bool, distance_agnostic: bool
) -> list[NeighborKernel]:
    return map_grams(layers, lambda x, g: _neighbor_kernel(x, g, k, unbiased, distance_agnostic))


def _neighbor_kernel(
    x: torch.Tensor, g: torch.Tensor, k: int, unbiased: bool, distance_agnostic: bool
) -> NeighborKernel:
    if bool((x == x[0]).all()):
        require_positive(0.0, "the spread of the features across samples")
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
    )
)
