"""A slow, literal re-implementation of the reference code's algorithms (platonic-rep ``metrics.py`` and
``measure_alignment.compute_score``), written from their definitions for parity tests and benchmarks. It lives in ``oracles/``, outside the installed
package: ``tests/conftest.py`` and the benchmarks that compare against it put this folder on ``sys.path``.

Everything here is deliberately naive: dense masks, a full ``argsort`` for every neighbour list, per-sample Python
loops for LCS / edit distance, and a layer sweep that recomputes everything for every layer pair. It keeps the
reference's quirks where they are numeric (the ``+1e-6`` CKA denominator is the ``fudge`` argument, default 0 so
results can be compared exactly with :mod:`prh.metrics`). Do not use it for real work: use :mod:`prh.metrics` and
:func:`prh.sweep`.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def nearest_neighbors(x: torch.Tensor, k: int) -> torch.Tensor:
    """(N, k) neighbours: the Gram matrix with its diagonal set to -1e8, fully argsorted, first k columns."""
    return (x @ x.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]


def mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    n = a.shape[0]
    mask_a = torch.zeros(n, n, device=a.device)
    mask_b = torch.zeros(n, n, device=a.device)
    rows = torch.arange(n, device=a.device)[:, None]
    mask_a[rows, nearest_neighbors(a, k)] = 1.0
    mask_b[rows, nearest_neighbors(b, k)] = 1.0
    return float(((mask_a * mask_b).sum(dim=1) / k).mean())


def cycle_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    knn_a, knn_b = nearest_neighbors(a, k), nearest_neighbors(b, k)
    n = a.shape[0]
    hits = knn_a[knn_b] == torch.arange(n, device=a.device).view(-1, 1, 1)
    return float(hits.float().view(n, -1).max(dim=1).values.mean())


def _lcs(x: list[int], y: list[int]) -> int:
    table = [[0] * (len(y) + 1) for _ in range(len(x) + 1)]
    for i in range(1, len(x) + 1):
        for j in range(1, len(y) + 1):
            if x[i - 1] == y[j - 1]:
                table[i][j] = table[i - 1][j - 1] + 1
            else:
                table[i][j] = max(table[i - 1][j], table[i][j - 1])
    return table[-1][-1]


def _levenshtein(x: list[int], y: list[int]) -> int:
    prev = list(range(len(y) + 1))
    for i in range(1, len(x) + 1):
        cur = [i] + [0] * len(y)
        for j in range(1, len(y) + 1):
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x[i - 1] != y[j - 1]))
        prev = cur
    return prev[-1]


def lcs_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Mean LCS length of the neighbour lists, divided by k (the reference returns the undivided mean)."""
    knn_a, knn_b = nearest_neighbors(a, k).tolist(), nearest_neighbors(b, k).tolist()
    return float(np.mean([_lcs(x, y) for x, y in zip(knn_a, knn_b)]) / k)


def edit_distance_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    knn_a, knn_b = nearest_neighbors(a, k).tolist(), nearest_neighbors(b, k).tolist()
    return float(1.0 - np.mean([_levenshtein(x, y) for x, y in zip(knn_a, knn_b)]) / k)


def hsic_unbiased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    """Song et al. (2012), Eq. 5, term by term."""
    m = k.shape[0]
    kt = k.clone().fill_diagonal_(0)
    lt = l.clone().fill_diagonal_(0)
    value = (
        torch.sum(kt * lt.T)
        + torch.sum(kt) * torch.sum(lt) / ((m - 1) * (m - 2))
        - 2 * torch.sum(torch.mm(kt, lt)) / (m - 2)
    )
    return value / (m * (m - 3))


def hsic_biased(k: torch.Tensor, l: torch.Tensor) -> torch.Tensor:  # noqa: E741
    h = torch.eye(k.shape[0], dtype=k.dtype, device=k.device) - 1 / k.shape[0]
    return torch.trace(k @ h @ l @ h)


def cka(a, b, kernel="linear", sigma=1.0, unbiased=False, fudge=0.0) -> float:
    if kernel == "linear":
        k, l = a @ a.T, b @ b.T  # noqa: E741
    else:
        k = torch.exp(-(torch.cdist(a, a) ** 2) / (2 * sigma**2))
        l = torch.exp(-(torch.cdist(b, b) ** 2) / (2 * sigma**2))  # noqa: E741
    hsic = hsic_unbiased if unbiased else hsic_biased
    return float(hsic(k, l) / (torch.sqrt(hsic(k, k) * hsic(l, l)) + fudge))


def cknna(a, b, k=10, unbiased=True, fudge=0.0) -> float:
    n = a.shape[0]
    gram_a, gram_b = a @ a.T, b @ b.T

    def similarity(kk, ll):
        if unbiased:
            kh = kk.clone().fill_diagonal_(float("-inf"))
            lh = ll.clone().fill_diagonal_(float("-inf"))
        else:
            kh, lh = kk, ll
        mask_k = torch.zeros(n, n, device=a.device).scatter_(1, torch.topk(kh, k, dim=1).indices, 1)
        mask_l = torch.zeros(n, n, device=a.device).scatter_(1, torch.topk(lh, k, dim=1).indices, 1)
        mask = mask_k * mask_l
        hsic = hsic_unbiased if unbiased else hsic_biased
        return hsic(mask * kk, mask * ll)

    return float(
        similarity(gram_a, gram_b)
        / (torch.sqrt(similarity(gram_a, gram_a) * similarity(gram_b, gram_b)) + fudge)
    )


def svcca_sklearn(
    a: torch.Tensor, b: torch.Tensor, dim: int = 10, lowrank: bool = False, seed: int = 0
) -> float:
    """SVCCA through scikit-learn's iterative CCA, as the reference does.

    ``lowrank=False`` uses an exact SVD (the definition); ``lowrank=True`` the reference's randomised
    ``torch.svd_lowrank`` (``q=dim``) plus its 1e-10 noise. Needs scikit-learn.
    """
    from sklearn.cross_decomposition import CCA

    def standardise(x):
        x = x.double()
        x = x - x.mean(dim=0)
        return x / (x.std(dim=0) + 1e-8)

    a, b = standardise(a), standardise(b)
    if lowrank:
        torch.manual_seed(seed)
        u1 = torch.svd_lowrank(a, q=dim)[0].numpy()
        u2 = torch.svd_lowrank(b, q=dim)[0].numpy()
    else:
        u1 = torch.linalg.svd(a, full_matrices=False)[0][:, :dim].numpy()
        u2 = torch.linalg.svd(b, full_matrices=False)[0][:, :dim].numpy()
    cca = CCA(n_components=dim, max_iter=5000, tol=1e-12)
    cca.fit(u1, u2)
    c1, c2 = cca.transform(u1, u2)
    if lowrank:
        rng = np.random.default_rng(seed)
        c1 = c1 + 1e-10 * rng.standard_normal(c1.shape)
        c2 = c2 + 1e-10 * rng.standard_normal(c2.shape)
    return float(np.mean([np.corrcoef(c1[:, i], c2[:, i])[0, 1] for i in range(dim)]))


METRICS = {
    "mutual_knn": mutual_knn,
    "cycle_knn": cycle_knn,
    "lcs_knn": lcs_knn,
    "edit_distance_knn": edit_distance_knn,
    "cka": cka,
    "unbiased_cka": lambda a, b, **kw: cka(a, b, unbiased=True, **kw),
    "cknna": cknna,
    "svcca": svcca_sklearn,
}


def compute_score(x_layers, y_layers, metric: str = "mutual_knn", normalize: bool = True, **kw):
    """The reference's layer search: for every (i, j), normalise both layers and call the metric from scratch.

    Returns ``(grid, best_score, best_pair)``; like the reference, ``best_pair`` is None when no score exceeds 0.
    """
    fn = METRICS[metric]
    grid = np.zeros((len(x_layers), len(y_layers)))
    best, best_pair = 0.0, None
    for i, x in enumerate(x_layers):
        for j, y in enumerate(y_layers):
            xa = F.normalize(x, p=2, dim=-1) if normalize else x
            ya = F.normalize(y, p=2, dim=-1) if normalize else y
            grid[i, j] = fn(xa, ya, **kw)
            if grid[i, j] > best:
                best, best_pair = grid[i, j], (i, j)
    return grid, best, best_pair


def remove_outliers_sort(feats: torch.Tensor, q: float) -> torch.Tensor:
    """The reference's exact clamp: sort all of |x| and take the element at rank int(q * numel)."""
    threshold = feats.view(-1).abs().sort().values[int(q * feats.numel())]
    return feats.clamp(-threshold, threshold)
