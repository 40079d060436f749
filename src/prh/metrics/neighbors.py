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


#: Queries whose exact neighbours are computed to measure the recall of approximate lists.
RECALL_SAMPLE = 512


def approximate_knn(x: torch.Tensor, k: int, seed: int = 0) -> tuple[torch.Tensor, float]:
    """Approximate k nearest neighbours by inner product (FAISS HNSW), self excluded, and their measured recall.

    An HNSW graph (``faiss.IndexHNSWFlat``, M = 32, efConstruction = 80, efSearch = max(64, 4k), inner-product
    metric) answers all N queries; the recall is then *measured*, not assumed: the exact lists of
    :data:`RECALL_SAMPLE` seeded random queries are computed by blocked search and compared as sets.

    Parameters
    ----------
    x : (N, D) float tensor (any device; FAISS runs on the CPU copy).
    k : neighbours per sample, ``1 <= k < N``.
    seed : seed of the recall sample.

    Returns
    -------
    knn : (N, k) int64 on ``x``'s device, most similar first.
    recall : mean over the sampled queries of |approximate ∩ exact| / k, in [0, 1].
    """
    try:
        import faiss
    except ImportError as err:
        from prh.errors import InputError

        raise InputError(
            "neighbors='approximate' needs FAISS: pip install faiss-cpu (or faiss-gpu), or `pip install prh[faiss]`; "
            "neighbors='exact' needs nothing extra."
        ) from err
    n, d = x.shape
    data = x.detach().to("cpu", torch.float32).contiguous().numpy()
    index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    index.add(data)
    index.hnsw.efSearch = max(64, 4 * k)
    _, found = index.search(data, min(k + 1, n))
    found = torch.from_numpy(found).long()
    # drop the query itself wherever it was returned, else the last (least similar) entry
    rows = torch.arange(n)[:, None]
    is_self = found == rows
    keep = ~is_self
    keep[~is_self.any(dim=1), -1] = False
    knn = found[keep].view(n, -1)[:, :k]
    # FAISS pads with -1 when a graph walk finds fewer than k + 1 points: fall back to exact for those rows
    short = (knn < 0).any(dim=1)
    sample = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(RECALL_SAMPLE, n)]
    fix = torch.unique(torch.cat([sample, torch.nonzero(short).flatten()]))
    xc = x.detach().to("cpu")
    exact = _exact_rows(xc, fix, k)
    is_sampled = torch.isin(fix, sample)
    overlap = (knn[fix[is_sampled]][:, :, None] == exact[is_sampled][:, None, :]).any(dim=2).double()
    recall = float(overlap.mean())
    if bool(short.any()):
        bad = torch.nonzero(short).flatten()
        knn[bad] = exact[torch.searchsorted(fix, bad)]
    return knn.to(x.device), recall


def _exact_rows(x: torch.Tensor, rows: torch.Tensor, k: int) -> torch.Tensor:
    """Exact (len(rows), k) neighbour lists of the given rows (self excluded), blocked like :func:`knn_indices`."""
    out = torch.empty((rows.numel(), k), dtype=torch.long)
    step = max(1, BLOCK_BYTES // (x.shape[0] * x.element_size()))
    for start in range(0, rows.numel(), step):
        part = rows[start : start + step]
        sims = x.index_select(0, part) @ x.T
        sims[torch.arange(part.numel()), part] = float("-inf")
        out[start : start + part.numel()] = torch.topk(sims, k, dim=1, sorted=True).indices
    return out
