"""Nearest-neighbour lists on inner products, the building block of every kNN metric.

Pure tensor functions: inputs are validated (N, D) tensors, outputs live on the input's device.
"""

from __future__ import annotations

import torch

from prh.metrics.kernels import inner_products

#: Up to this many samples the whole (N, N) Gram matrix is computed at once (at most 64 MiB in float32).
ROW_BLOCK = 4096
#: Above ROW_BLOCK samples, rows of similarities are processed in blocks of at most this many bytes, so peak memory
#: is O(block x N) whatever N is (e.g. 1,024 rows at N=65,536).
BLOCK_BYTES = 256 * 2**20


def knn_indices(x: torch.Tensor, k: int, exclude_self: bool = True) -> torch.Tensor:
    """Indices of each row's ``k`` nearest neighbours by inner product, most similar first.

    Parameters
    ----------
    x : (N, D) float tensor
    k : int, ``1 <= k < N``
    exclude_self : bool
        If True the sample itself is never returned as its own neighbour (the paper's convention).

    Returns
    -------
    (N, k) int64 tensor on ``x``'s device. Ties may be ordered differently from a full argsort.
    Peak extra memory: the (N, N) Gram matrix up to :data:`ROW_BLOCK` samples, then blocks of rows within
    :data:`BLOCK_BYTES`.
    """
    n = x.shape[0]
    out = torch.empty((n, k), dtype=torch.long, device=x.device)
    step = n if n <= ROW_BLOCK else max(1, min(ROW_BLOCK, BLOCK_BYTES // (n * x.element_size())))
    for start in range(0, n, step):
        stop = min(start + step, n)
        sims = inner_products(x) if stop - start == n else x[start:stop] @ x.T
        if exclude_self:
            rows = torch.arange(stop - start, device=x.device)
            sims[rows, rows + start] = float("-inf")
        out[start:stop] = torch.topk(sims, k, dim=1, sorted=True).indices
    return out


def knn_from_gram(
    gram: torch.Tensor, k: int, exclude_self: bool = True, overwrite: bool = False
) -> torch.Tensor:
    """Like :func:`knn_indices` but from a precomputed (N, N) Gram matrix (left unchanged unless ``overwrite``)."""
    sims = gram if overwrite else gram.clone()
    if exclude_self:
        sims.fill_diagonal_(float("-inf"))
    return torch.topk(sims, k, dim=1, sorted=True).indices


def neighbor_mask(knn: torch.Tensor, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Dense (N, N) 0/1 matrix with ``mask[i, j] = 1`` iff ``j`` is among ``knn[i]``."""
    mask = torch.zeros((knn.shape[0], n), dtype=dtype, device=knn.device)
    mask.scatter_(1, knn, 1)
    return mask
