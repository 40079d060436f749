"""Batched null grids: the (Lx, Ly) score grid of X against row-permuted Y, for many permutations at once.

An engine is built once per (X, Y) pair from the per-layer caches and then maps a (B, N) batch of permutations to a
(B, Lx, Ly) float64 tensor of grids, ``grids[b, i, j] = metric(X_i, Y_j[perms[b]])``. The same permutation is applied
to every layer of Y. Engines, fastest first:

* :class:`MaskGatherEngine` (``mutual_knn``, ``cycle_knn``) — X's neighbour masks of all layers are stacked once
  into an (N*N, Lx) 0/1 table; the permuted neighbour lists of each Y layer are turned into flat indices and a
  single ``embedding_bag`` gathers and sums the table rows: O(B * Ly * N * k * Lx) per batch, no sorting, no
  (N, N) work per permutation.
* :class:`KernelEngine` (``cka``, ``unbiased_cka``) — X's centred kernels stacked once as (Lx, N*N); the permuted
  Y kernels ``K[perm][:, perm]`` of a batch are gathered and multiplied in one matrix product.
* :class:`NeighborKernelEngine` (``cknna``) — X's neighbour lists index Y's stacked masks and Gram matrices at
  permuted coordinates: O(Lx * Ly * N * k) per permutation.
* :class:`PermutedCacheEngine` (every cache type :func:`~prh.stats.permute.permute_cache` knows: the other kNN
  metrics, CKNNA, SVCCA) — re-index the caches of Y for a batch of permutations and score them with the metric's
  own batched ``grid`` function (B * Ly "layers" at once).
* :class:`RecomputeEngine` (any other registered metric) — permute Y's raw rows and recompute its caches.

All engines give the same numbers as calling the metric on ``(X_i, Y_j[perm])`` (tested), up to float rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from prh.errors import InputError
from prh.metrics import spec as metric_spec
from prh.metrics.cka import CenteredKernel
from prh.metrics.cknna import NeighborKernel
from prh.metrics.kernels import require_positive
from prh.metrics.knn import KnnCache
from prh.metrics.null import NullEngine, inverse_permutation
from prh.stats.permute import has_permuter, permute_cache, permute_rows

#: Upper bound (bytes) of the stacked neighbour-mask table of MaskGatherEngine; more X layers are split in chunks.
MASK_TABLE_BYTES = 2**28
#: Upper bound on gathered index elements per batch (B * Ly * N * k).
INDEX_ELEMENTS = 2**22
#: Largest stacked copy (bytes) of X's centred kernels made by KernelEngine.
STACK_BYTES = 2**30
#: Upper bound on the elements of one vectorised CKNNA step (X layers x Ly x N x k).
NEIGHBOR_ELEMENTS = 2**22
#: Upper bound on float64 elements of the permuted Y kernels gathered per batch (B * Ly * N * N).
KERNEL_ELEMENTS = 2**25


class MaskGatherEngine(NullEngine):
    """Null grids of ``mutual_knn`` (``mode="sum"``) or ``cycle_knn`` (``mode="max"``) from neighbour masks.

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
        per_layer = n * n * 4
        step = max(1, MASK_TABLE_BYTES // per_layer)
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

    @staticmethod
    def fits(n: int) -> bool:
        """Whether one X layer's mask table fits in :data:`MASK_TABLE_BYTES`."""
        return n * n * 4 <= MASK_TABLE_BYTES

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


class KernelEngine(NullEngine):
    """Null grids of (unbiased) CKA: ``<Kx_i, Ky_j[perm][:, perm]> / sqrt(HSIC_xx HSIC_yy)`` in float64.

    X's centred kernels are stacked into one (Lx, N*N) matrix when that fits in :data:`STACK_BYTES` (one matrix
    product per batch), otherwise each X layer is multiplied separately (no extra copy of the caches).
    """

    def __init__(self, xs: Sequence[CenteredKernel], ys: Sequence[CenteredKernel]) -> None:
        self.n = xs[0].centered.shape[0]
        self.device = xs[0].centered.device
        self.lx, self.ly = len(xs), len(ys)
        flat = [c.centered.reshape(-1) for c in xs]
        self.left = torch.stack(flat) if self.lx * flat[0].numel() * 8 <= STACK_BYTES else flat
        self.right = [c.centered for c in ys]
        nx = torch.tensor([c.self_hsic for c in xs], dtype=torch.float64).sqrt()
        ny = torch.tensor([c.self_hsic for c in ys], dtype=torch.float64).sqrt()
        self.norm = nx[:, None, None] * ny[None, None, :]  # (Lx, 1, Ly)
        self.batch_size = max(1, KERNEL_ELEMENTS // max(1, self.ly * self.n * self.n))

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        perms = perms.to(self.device)
        b, n = perms.shape
        # K[perm][:, perm]: a row gather (contiguous copies) then a gather within each row
        permuted = torch.stack([ky.index_select(0, p).index_select(1, p) for ky in self.right for p in perms])
        right = permuted.view(self.ly * b, n * n).T  # columns ordered (Y layer, permutation)
        if isinstance(self.left, torch.Tensor):
            hsic = self.left @ right  # (Lx, Ly*B)
        else:
            hsic = torch.stack([kx @ right for kx in self.left])
        grid = hsic.cpu().view(self.lx, self.ly, b).transpose(1, 2) / self.norm  # (Lx, B, Ly)
        return grid.permute(1, 0, 2)


class NeighborKernelEngine(NullEngine):
    """Null grids of CKNNA from gathers into Y's stacked (Ly, N*N) neighbour masks and Gram matrices.

    CKNNA's masked HSIC of (X_i, Y_j) only reads Y at the positions (r, c) and (c, r) with c a neighbour of r in
    X_i. Under a permutation π, Y_j's permuted mask / Gram at (u, v) is the stored one at (π u, π v), so for each
    permutation and X layer the N*k flat positions are computed once and read from all Y layers at once.
    """

    def __init__(
        self, xs: Sequence[NeighborKernel], ys: Sequence[NeighborKernel], unbiased: bool, agnostic: bool
    ) -> None:
        self.xs = list(xs)
        self.n, self.k = xs[0].knn.shape
        self.device = xs[0].knn.device
        self.lx, self.ly = len(xs), len(ys)
        self.unbiased, self.agnostic = unbiased, agnostic
        n = self.n
        # one (N*N, Ly) table: Y_j's Gram value where (u, v) is a Y_j-neighbour pair, NaN elsewhere, so a single
        # row gather gives both the mask (finite) and the kernel value for all Y layers at once
        dtype = ys[0].gram.dtype
        table = torch.full((n, n, self.ly), float("nan"), dtype=dtype, device=self.device)
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

    @staticmethod
    def fits(n: int, ly: int, itemsize: int) -> bool:
        """Whether the (N*N, Ly) table fits in 4 * :data:`MASK_TABLE_BYTES`."""
        return n * n * ly * itemsize <= 4 * MASK_TABLE_BYTES

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
        trace_pq = (p_vals * q_transposed).sum(dim=(1, 2))  # (c, Ly)
        sum_p, sum_q = p_vals.sum(dim=(1, 2)), q_vals.sum(dim=(1, 2))
        row_p, row_q = p_vals.sum(dim=2), q_vals.sum(dim=2)  # (c, N, Ly)
        index = knn.reshape(c, n * k, 1).expand(c, n * k, ly)
        col_p = torch.zeros((c, n, ly), dtype=torch.float64, device=self.device)
        col_p.scatter_add_(1, index, p_vals.reshape(c, n * k, ly))
        if self.unbiased:
            return (
                trace_pq + sum_p * sum_q / ((n - 1) * (n - 2)) - 2.0 * (col_p * row_q).sum(dim=1) / (n - 2)
            ) / (n * (n - 3))
        col_q = torch.zeros_like(col_p).scatter_add_(1, index, q_vals.reshape(c, n * k, ly))
        return trace_pq - ((col_q * row_p).sum(dim=1) + (col_p * row_q).sum(dim=1)) / n + sum_p * sum_q / n**2

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        perms = perms.to(self.device)
        out = torch.empty((perms.shape[0], self.lx, self.ly), dtype=torch.float64)
        norm = (self.self_x[:, None] * self.self_y[None, :]).sqrt()
        for b, perm in enumerate(perms):
            for start in range(0, self.lx, self.chunk):
                layers = slice(start, start + self.chunk)
                out[b, layers] = self._hsic(layers, perm).cpu() / norm[layers]
        return out


class PermutedCacheEngine(NullEngine):
    """Re-index Y's caches (:func:`~prh.stats.permute.permute_cache`) and score with the metric's ``grid``."""

    def __init__(self, metric: str, xs: Sequence[Any], ys: Sequence[Any], params: dict) -> None:
        self.spec = metric_spec(metric)
        self.xs, self.ys, self.params = list(xs), list(ys), params
        self.lx, self.ly = len(xs), len(ys)
        self.batch_size = max(1, 64 // self.ly)

    def grids(self, perms: torch.Tensor) -> torch.Tensor:
        device = _cache_device(self.ys[0])
        perms = perms.to(device)
        inv = inverse_permutation(perms)
        batch = [permute_cache(c, p, q) for p, q in zip(perms, inv) for c in self.ys]
        grid = self.spec.grid(self.xs, batch, **self.params)  # (Lx, B*Ly)
        return grid.detach().to("cpu", torch.float64).view(self.lx, perms.shape[0], self.ly).permute(1, 0, 2)


class RecomputeEngine(NullEngine):
    """Generic fallback: permute Y's raw rows and recompute its caches (works for every registered metric)."""

    def __init__(self, metric: str, xs: Sequence[Any], raw_y: Sequence[torch.Tensor], params: dict) -> None:
        self.spec = metric_spec(metric)
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
    metric: str,
    xs: Sequence[Any],
    ys: Sequence[Any],
    params: dict,
    raw_y: Sequence[torch.Tensor] | None = None,
    engine: str = "auto",
) -> NullEngine:
    """Pick the fastest engine that is exact for ``metric`` and these cache types.

    Parameters
    ----------
    metric : registry name.
    xs, ys : per-layer caches of X and Y (``LayerCaches.caches``).
    params : checked metric options (``LayerCaches.params``).
    raw_y : Y's raw (N, D_j) layers, needed only by the recompute fallback.
    engine : ``"auto"`` or one of ``"mask"``, ``"kernel"``, ``"neighbor"``, ``"permuted"``, ``"recompute"`` (for tests).
    """
    name = metric_spec(metric).name
    knn_caches = all(isinstance(c, KnnCache) for c in (*xs, *ys))
    kernel_caches = all(isinstance(c, CenteredKernel) for c in (*xs, *ys))
    n = _cache_rows(ys[0], raw_y)
    can_mask = name in ("mutual_knn", "cycle_knn") and knn_caches and MaskGatherEngine.fits(n)
    can_kernel = name in ("cka", "unbiased_cka") and kernel_caches
    can_neighbor = (
        name == "cknna"
        and all(isinstance(c, NeighborKernel) for c in (*xs, *ys))
        and NeighborKernelEngine.fits(n, len(ys), ys[0].gram.element_size())
    )
    can_permute = all(has_permuter(c) for c in ys)
    if engine == "auto":
        engine = (
            "mask"
            if can_mask
            else "kernel"
            if can_kernel
            else "neighbor"
            if can_neighbor
            else "permuted"
            if can_permute
            else "recompute"
        )
    if engine == "neighbor" and can_neighbor:
        for side, caches in (("A", xs), ("B", ys)):
            for idx, c in enumerate(caches):
                require_positive(c.self_similarity, f"masked HSIC({side}, {side}) of layer {idx}")
        return NeighborKernelEngine(xs, ys, params["unbiased"], params["distance_agnostic"])
    if engine == "mask" and can_mask:
        return MaskGatherEngine(xs, ys, "sum" if name == "mutual_knn" else "max")
    if engine == "kernel" and can_kernel:
        return KernelEngine(xs, ys)
    if engine == "permuted" and can_permute:
        return PermutedCacheEngine(metric, xs, ys, params)
    if engine == "recompute" and raw_y is not None:
        return RecomputeEngine(metric, xs, raw_y, params)
    if engine == "recompute" or (not can_permute and raw_y is None):
        raise InputError(
            f"cannot permute the cached layers of {metric!r} (cache type {type(ys[0]).__name__} has no "
            "re-indexing rule): pass Y's raw features instead of precomputed LayerCaches."
        )
    raise InputError(f"engine={engine!r} is not available for metric {metric!r} with these caches.")


def _cache_rows(cache: Any, raw_y: Sequence[torch.Tensor] | None) -> int:
    if raw_y is not None:
        return int(raw_y[0].shape[0])
    for value in vars(cache).values():
        if isinstance(value, torch.Tensor) and value.ndim >= 1:
            return int(value.shape[0])
    return 0
