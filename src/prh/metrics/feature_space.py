"""Linear-kernel HSIC without N x N matrices: everything from feature-space products (the large-N path).

For the linear kernel ``K = Xc Xc^T`` of column-centred features ``Xc`` ((N, D)), every HSIC term that linear CKA
needs is a function of three feature-space quantities (Kornblith et al. 2019; Song et al. 2012):

* ``P(X, Y) = ||Xc^T Yc||_F^2 = tr(K L)`` — the biased HSIC ``tr(K H L H)`` (``H K H = K`` for centred features);
* ``r_X = diag(K)``, the (N,) squared norms of the centred rows, and ``R_X = sum(r_X)``;
* the unbiased HSIC (Song et al.'s estimator, times ``N (N - 3)``), from ``K~ = K - diag(K)`` with ``K 1 = 0``:
  ``tr(K~ L~) = P - r_X . r_Y``, ``1^T K~ 1 = -R_X``, ``1^T K~ L~ 1 = r_X . r_Y``, so

      N (N - 3) HSIC_u = P - (1 + 2 / (N - 2)) r_X . r_Y + R_X R_Y / ((N - 1)(N - 2)).

Time O(N D_x D_y) per layer pair and O(N D^2) per layer, memory O(D_x D_y + block (D_x + D_y)): no (N, N) matrix.
The products are accumulated over row blocks in float64 (the unbiased terms cancel to O(1/N) of P for unrelated
features, so a float32 sum over all N rows would lose the answer), from features kept in their own dtype: float64
layers are multiplied in float64 (exact agreement with the Gram path, tested to 1e-12), float32 layers block by
block in float32 (twice the BLAS speed; each block's product is added to the float64 accumulator, so the error
stays at float32 rounding of one block, ~1e-7 of the score — the Gram path of float32 inputs is no more exact).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

#: bytes of one row block of X and Y (centred copies, in the work dtype) during accumulation; large blocks keep
#: the matrix products efficient (at N = 8,192 one 7k-row float32 block is ~25 % faster than five 1.8k-row ones).
BLOCK_BYTES = 128 * 2**20
#: float64 bytes of the (D_x, sum D_y) accumulator; more Y layers are split into groups.
ACCUMULATOR_BYTES = 256 * 2**20
#: rows per float64 chunk of the column sums.
_MEAN_CHUNK = 256


@dataclass(frozen=True)
class FeatureMoments:
    """Per-layer cache of the feature-space path.

    Attributes
    ----------
    x : (N, D) the layer as given (its dtype and device; not copied).
    mean : (D,) float64 column means subtracted on the fly (zeros when not centring).
    row_sq : (N,) float64 squared norms of the centred rows, ``diag(K)``.
    gram_norm : ``||Xc^T Xc||_F^2 = tr(K^2)`` (float).
    """

    x: torch.Tensor
    mean: torch.Tensor
    row_sq: torch.Tensor
    gram_norm: float

    @property
    def n(self) -> int:
        return int(self.x.shape[0])


def _block_rows(n: int, width: int, itemsize: int = 8) -> int:
    return max(1, min(n, BLOCK_BYTES // max(1, itemsize * width)))


def _work_dtype(*layers: FeatureMoments) -> torch.dtype:
    """float64 when any layer is float64, else float32 (block products; accumulation is always float64)."""
    return torch.float64 if any(m.x.dtype == torch.float64 for m in layers) else torch.float32


def _rows(m: FeatureMoments, rows: torch.Tensor | slice) -> torch.Tensor:
    """The layer's ``rows``: a view for a slice, a gathered copy for an index tensor (a permutation block)."""
    return m.x[rows] if isinstance(rows, slice) else m.x.index_select(0, rows)


def _centred_block(
    m: FeatureMoments, rows: torch.Tensor | slice, dtype: torch.dtype = torch.float64
) -> torch.Tensor:
    return _rows(m, rows).to(dtype) - m.mean.to(dtype)


def _fill_centred(
    buf: torch.Tensor, layers: Sequence[FeatureMoments], rows: torch.Tensor | slice
) -> torch.Tensor:
    """The centred ``rows`` of ``layers`` side by side, written into (a leading part of) ``buf`` (no temporaries)."""
    count = (rows.stop - rows.start) if isinstance(rows, slice) else int(rows.numel())
    out = buf[:count]
    col = 0
    for m in layers:
        d = m.x.shape[1]
        part = out[:, col : col + d]
        block = _rows(m, rows)
        shift = m.mean.to(buf.dtype)
        if block.dtype == buf.dtype:
            torch.sub(block, shift, out=part)
        else:
            part.copy_(block).sub_(shift)
        col += d
    return out


def moments(x: torch.Tensor, center: bool = True) -> FeatureMoments:
    """The :class:`FeatureMoments` of one (N, D) layer: column means, centred row norms, ``||Xc^T Xc||_F^2``.

    Works block by block in the layer's work dtype (float64 layers in float64, others in float32 — twice the BLAS
    speed). The column means are float64 sums of small float64 chunks (exact to float64 rounding whatever the row
    order, and ~6x faster than a float64 reduction over dim 0 of a float32 layer). Row norms of float64 layers are
    float64 sums; those of other layers are float32 norms squared in float64 — float32 rounding (~1e-7 relative),
    as the block products carry.
    """
    n, d = x.shape
    exact = x.dtype == torch.float64
    dtype = torch.float64 if exact else torch.float32
    step = _block_rows(n, d, dtype.itemsize)
    mean = torch.zeros(d, dtype=torch.float64, device=x.device)
    if center:
        for start in range(0, n, _MEAN_CHUNK):
            mean += x[start : start + _MEAN_CHUNK].to(torch.float64).sum(dim=0)
        mean /= n
    cov = torch.zeros((d, d), dtype=torch.float64, device=x.device)
    row_sq = torch.empty(n, dtype=torch.float64, device=x.device)
    m = FeatureMoments(x, mean, row_sq, 0.0)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        block = _centred_block(m, rows, dtype)
        cov += (block.T @ block).to(torch.float64)
        if exact:
            row_sq[rows] = (block * block).sum(dim=1)
        else:
            row_sq[rows] = torch.linalg.vector_norm(block, dim=1).to(torch.float64).square()
    return FeatureMoments(x, mean, row_sq, float((cov * cov).sum()))


def _groups(widths: list[int], limit: int) -> list[list[int]]:
    """Consecutive index groups whose widths sum to at most ``limit`` (a wider single item is its own group)."""
    groups: list[list[int]] = [[]]
    total = 0
    for i, w in enumerate(widths):
        if groups[-1] and total + w > limit:
            groups.append([])
            total = 0
        groups[-1].append(i)
        total += w
    return groups


def cross_norms(
    xs: Sequence[FeatureMoments], ys: Sequence[FeatureMoments], perm: torch.Tensor | None = None
) -> torch.Tensor:
    """(Lx, Ly) float64 grid of ``||Xc_i^T Yc_j[perm]||_F^2`` (``perm`` a row permutation of every Y layer).

    The centred row blocks of a group of X layers and of a group of Y layers are concatenated and multiplied into
    one float64 accumulator (sum D_x, sum D_y) — one matrix product per row block for the whole grid when it fits
    in :data:`ACCUMULATOR_BYTES` (else the layers are split into groups). Permuted rows of Y are gathered block by
    block, so a permutation never copies a whole layer.
    """
    n = xs[0].n
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    if perm is not None:
        perm = perm.to(ys[0].x.device)
    cap = max(1, ACCUMULATOR_BYTES // 8)
    dtype = _work_dtype(*xs, *ys)
    dx = [m.x.shape[1] for m in xs]
    dy = [m.x.shape[1] for m in ys]
    for xg in _groups(dx, max(max(dx), int(math.isqrt(cap)))):
        wx = [dx[i] for i in xg]
        for yg in _groups(dy, max(max(dy), cap // sum(wx))):
            wy = [dy[j] for j in yg]
            device = xs[0].x.device
            acc = torch.zeros((sum(wx), sum(wy)), dtype=torch.float64, device=device)
            step = _block_rows(n, sum(wx) + sum(wy), dtype.itemsize)
            left_buf = torch.empty((min(step, n), sum(wx)), dtype=dtype, device=device)
            right_buf = torch.empty((min(step, n), sum(wy)), dtype=dtype, device=device)
            for start in range(0, n, step):
                rows = slice(start, min(start + step, n))
                yrows = rows if perm is None else perm[rows]
                left = _fill_centred(left_buf, [xs[i] for i in xg], rows)
                right = _fill_centred(right_buf, [ys[j] for j in yg], yrows)
                acc += (left.T @ right).to(torch.float64)
            for i, row_part in zip(xg, acc.split(wx, dim=0)):
                for j, part in zip(yg, row_part.split(wy, dim=1)):
                    grid[i, j] = float((part * part).sum())
    return grid


def hsic_terms(
    xs: Sequence[FeatureMoments],
    ys: Sequence[FeatureMoments],
    unbiased: bool,
    perm: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cross HSIC grid (Lx, Ly) and the self HSIC of each X (Lx,) and Y (Ly,) layer, all float64 on the CPU.

    Biased: ``P``; unbiased: ``N (N - 3)`` times Song et al.'s estimator (see the module docstring). The scale is
    the same as that of the (N, N) path (``<HKH, HLH>`` and ``<u(K), u(L)>``), so scores agree to rounding.
    """
    cross = cross_norms(xs, ys, perm)
    self_x = torch.tensor([m.gram_norm for m in xs], dtype=torch.float64)
    self_y = torch.tensor([m.gram_norm for m in ys], dtype=torch.float64)
    if not unbiased:
        return cross, self_x, self_y
    n = xs[0].n
    rx = torch.stack([m.row_sq for m in xs]).cpu()
    ry = torch.stack([m.row_sq for m in ys]).cpu()
    if perm is not None:
        ry = ry[:, perm.cpu()]
    a, b = 1.0 + 2.0 / (n - 2), 1.0 / ((n - 1) * (n - 2))

    def unbias(p: torch.Tensor, left: torch.Tensor, right: torch.Tensor) -> torch.Tensor:
        return p - a * (left @ right.T) + b * left.sum(dim=1)[:, None] * right.sum(dim=1)[None, :]

    diag_x = torch.stack([unbias(s.view(1, 1), r[None], r[None])[0, 0] for s, r in zip(self_x, rx)])
    diag_y = torch.stack([unbias(s.view(1, 1), r[None], r[None])[0, 0] for s, r in zip(self_y, ry)])
    return unbias(cross, rx, ry), diag_x, diag_y


def per_feature_hsic(mx: FeatureMoments, my: FeatureMoments, perm: torch.Tensor | None = None) -> float:
    """Sum over shared columns a of ``N (N - 3) HSIC_u(x_a x_a^T, y_a y_a^T)`` (rank-one kernels), by row blocks.

    On centred columns Song's estimator of two rank-one kernels is
    ``(x.y)^2 - N/(N-2) sum_i x_i^2 y_i^2 + (x.x)(y.y) / ((N-1)(N-2))`` (the feature-debiasing term of
    :mod:`prh.metrics.debiased_cka`); ``perm`` permutes the rows of Y. Needs ``D_x == D_y``.
    """
    n, d = mx.x.shape
    dot = torch.zeros(d, dtype=torch.float64, device=mx.x.device)
    fourth, sq_x, sq_y = torch.zeros_like(dot), torch.zeros_like(dot), torch.zeros_like(dot)
    if perm is not None:
        perm = perm.to(my.x.device)
    step = _block_rows(n, 2 * d)
    for start in range(0, n, step):
        rows = slice(start, min(start + step, n))
        a = _centred_block(mx, rows)
        b = _centred_block(my, rows if perm is None else perm[rows])
        dot += (a * b).sum(dim=0)
        fourth += (a * a * b * b).sum(dim=0)
        sq_x += (a * a).sum(dim=0)
        sq_y += (b * b).sum(dim=0)
    return float((dot * dot - n / (n - 2) * fourth + sq_x * sq_y / ((n - 1) * (n - 2))).sum())
