"""Kernels over a fixed set of N items (e.g. colours) and their agreement, with a label-permutation null.

A :class:`Kernel` is one or more (N, N) similarity matrices (one per layer of a model; one for CIELAB or a PMI
table) — higher means more alike. Two kernels are compared on every layer pair by

- mutual kNN: the mean over items of |kNN_a(i) ∩ kNN_b(i)| / k, neighbours by highest similarity, self excluded
  (on cosine kernels of L2-normalised features this is :func:`prh.metrics.mutual_knn`);
- Spearman: the rank correlation of the two kernels' off-diagonal entries i < j (equivalently of their distance
  matrices; on Euclidean distances of features this is :func:`prh.metrics.rsa` with ``rdm="euclidean"``).

The best score over the layer grid is tested against a label-permutation null (a Mantel test): the items of one
kernel are relabelled by a random permutation (rows and columns together) K times, and each time the maximum over
the same layer grid is taken, so the layer search is paid for. p = (1 + #{null >= observed}) / (K + 1)
(:func:`prh.stats.permutation_p_value`). The label-shuffled control relabels once, with a fixed permutation, and
goes through the same maximum: it must come out at chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from prh._validation import check_int
from prh.errors import InputError


@dataclass
class Kernel:
    """Similarity matrices of one representation over N items.

    Attributes
    ----------
    name : str
        e.g. ``"CIELAB"``, ``"pixels (PMI)"``, a model name.
    kind : str
        ``"perceptual"``, ``"pixels"``, ``"language"``, ``"vision"``.
    layers : list of (N, N) float64 tensors
        Symmetric similarities, one per layer (a single entry for a table such as CIELAB).
    distances : list of (N, N) float64 tensors
        Dissimilarities for the 2-D embedding (same order as ``layers``; zero diagonal).
    """

    name: str
    kind: str
    layers: list[torch.Tensor]
    distances: list[torch.Tensor] = field(default_factory=list)

    @property
    def n(self) -> int:
        return int(self.layers[0].shape[0])


def cosine_kernel(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(similarity, distance) of features ``x`` (N, D): cosine similarity and the Euclidean distance of the
    L2-normalised rows, sqrt(2 - 2 cos)."""
    z = torch.nn.functional.normalize(x.to(torch.float64), dim=1)
    sim = z @ z.T
    dist = (2.0 - 2.0 * sim).clamp_min(0.0).sqrt()
    dist.fill_diagonal_(0.0)
    return sim, dist


def feature_kernel(name: str, kind: str, layers: list[torch.Tensor]) -> Kernel:
    """A :class:`Kernel` of per-layer features (each (N, D_l)): cosine similarities, one per layer."""
    sims, dists = zip(*(cosine_kernel(x) for x in layers))
    return Kernel(name, kind, list(sims), list(dists))


def _upper(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    return tuple(torch.triu_indices(n, n, offset=1))  # type: ignore[return-value]


@dataclass
class _Prepared:
    """Per-layer caches of one kernel: neighbour lists (L, N, k), neighbour masks (L, N, N) bool, and the
    standardised ranks of the upper triangle, as vectors (L, M) and placed in symmetric (L, N * N) matrices with a
    zero diagonal (M = N (N - 1) / 2; float32: the grids are sums of M products of unit-norm vectors)."""

    knn: torch.Tensor
    mask: torch.Tensor
    ranks: torch.Tensor
    full: torch.Tensor


def _prepare(kernel: Kernel, k: int) -> _Prepared:
    from scipy.stats import rankdata

    n = kernel.n
    iu, ju = _upper(n)
    knn, masks, ranks, fulls = [], [], [], []
    for sim in kernel.layers:
        s = sim.clone().to(torch.float64)
        s.fill_diagonal_(float("-inf"))
        idx = torch.topk(s, k, dim=1).indices
        knn.append(idx)
        mask = torch.zeros((n, n), dtype=torch.bool)
        mask.scatter_(1, idx, True)
        masks.append(mask)
        r = torch.from_numpy(rankdata(sim[iu, ju].numpy(), method="average"))
        r = r - r.mean()
        norm = r.norm()
        if not float(norm) > 0:
            raise InputError(
                f"kernel {kernel.name!r} is constant (every pair equally similar): its rank correlation with "
                f"another kernel is undefined. Check its input."
            )
        r = (r / norm).to(torch.float32)
        full = torch.zeros((n, n), dtype=torch.float32)
        full[iu, ju] = r
        full[ju, iu] = r
        ranks.append(r)
        fulls.append(full.reshape(-1))
    return _Prepared(torch.stack(knn), torch.stack(masks), torch.stack(ranks), torch.stack(fulls))


def _grids(
    a: _Prepared, b: _Prepared, perm: torch.Tensor | None, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(mutual kNN grid, Spearman grid), each (La, Lb) float64, of ``a`` against ``b`` relabelled by ``perm``.

    Relabelling b by π gives b'(i, j) = b(π_i, π_j): the neighbours of i in b' are π⁻¹(kNN_b(π_i)), so
    |kNN_a(i) ∩ kNN_b'(i)| = Σ_j mask_a[i, π⁻¹(kNN_b(π_i))_j], and the upper-triangle ranks of b' are b's ranks
    read at (π_i, π_j).
    """
    n = a.mask.shape[1]
    if perm is None:
        knn_b, ranks_b = b.knn, b.ranks
    else:
        inv = torch.empty_like(perm)
        inv[perm] = torch.arange(n)
        knn_b = inv[b.knn[:, perm]]
        iu, ju = _upper(n)
        ranks_b = b.full[:, perm[iu] * n + perm[ju]]
    rows = torch.arange(n)[None, :, None]
    hits = a.mask[:, rows, knn_b]  # (La, Lb, N, k): is b's j-th neighbour of i among a's?
    knn_grid = hits.sum(dim=(2, 3), dtype=torch.int64).to(torch.float64) / (n * k)
    spear = (a.ranks @ ranks_b.T).to(torch.float64)
    return knn_grid, spear.clamp(-1.0, 1.0)


@dataclass
class Comparison:
    """Agreement of kernel ``a`` with kernel ``b`` over their layer grid.

    ``mutual_knn`` / ``spearman``: the best score over the grid, at ``layers_knn`` / ``layers_spearman``;
    ``p_knn`` / ``p_spearman``: permutation p-values of those maxima; ``null_mean_*``: mean of the null maxima
    (the chance level of a layer-maximised score); ``tau_knn``: the null's (1 - alpha) threshold and
    ``calibrated_knn`` = (score - tau) / (1 - tau) clipped to [0, 1]; ``control_*``: the same maxima with b's labels
    shuffled once (and their p-values); ``chance_knn`` = k / (N - 1).
    """

    a: str
    b: str
    kind_a: str
    kind_b: str
    n: int
    k: int
    permutations: int
    mutual_knn: float
    spearman: float
    layers_knn: tuple[int, int]
    layers_spearman: tuple[int, int]
    p_knn: float
    p_spearman: float
    null_mean_knn: float
    null_mean_spearman: float
    tau_knn: float
    calibrated_knn: float
    control_knn: float
    control_spearman: float
    control_p_knn: float
    control_p_spearman: float
    chance_knn: float
    grid_knn: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    def row(self) -> dict:
        """One flat table row (no grid)."""
        out = {k: v for k, v in vars(self).items() if k != "grid_knn"}
        out["layers_knn"] = f"{self.layers_knn[0]},{self.layers_knn[1]}"
        out["layers_spearman"] = f"{self.layers_spearman[0]},{self.layers_spearman[1]}"
        return out


def compare(
    a: Kernel, b: Kernel, k: int = 10, permutations: int = 1000, alpha: float = 0.05, seed: int = 0
) -> Comparison:
    """Agreement of two kernels over all their layer pairs, with a label-permutation null (see module docstring).

    Parameters
    ----------
    a, b : Kernel
        Over the same N items in the same order.
    k : int
        Neighbours of the mutual kNN score, 1 <= k < N.
    permutations : int
        K relabellings of ``b`` for the null (>= 1; p-values are multiples of 1/(K+1)).
    alpha : float
        Level of the null threshold ``tau_knn``.
    seed : int
        Seeds the permutations (``seed``) and the control's one permutation (``seed + 10_000``).

    Returns
    -------
    Comparison
    """
    from prh._validation import check_k
    from prh.stats import calibrated_score, permutation_p_value, permutation_threshold

    if a.n != b.n:
        raise InputError(f"kernels {a.name!r} (N={a.n}) and {b.name!r} (N={b.n}) must cover the same items.")
    k = check_k(k, a.n)
    permutations = check_int(permutations, "permutations", minimum=1, hint="e.g. 1000")
    pa, pb = _prepare(a, k), _prepare(b, k)
    knn_grid, sp_grid = _grids(pa, pb, None, k)
    # relabel the side with fewer layers (cheaper; relabelling either side gives the same null distribution)
    fixed, moved = (pa, pb) if pb.mask.shape[0] <= pa.mask.shape[0] else (pb, pa)
    gen = torch.Generator().manual_seed(seed)
    null_knn = np.empty(permutations)
    null_sp = np.empty(permutations)
    for t in range(permutations):
        perm = torch.randperm(a.n, generator=gen)
        g_knn, g_sp = _grids(fixed, moved, perm, k)
        null_knn[t], null_sp[t] = float(g_knn.max()), float(g_sp.max())
    control_perm = torch.randperm(a.n, generator=torch.Generator().manual_seed(seed + 10_000))
    c_knn, c_sp = _grids(pa, pb, control_perm, k)
    obs_knn, obs_sp = float(knn_grid.max()), float(sp_grid.max())
    tau = permutation_threshold(obs_knn, null_knn, alpha)
    best_knn = np.unravel_index(int(knn_grid.argmax()), tuple(knn_grid.shape))
    best_sp = np.unravel_index(int(sp_grid.argmax()), tuple(sp_grid.shape))
    return Comparison(
        a=a.name,
        b=b.name,
        kind_a=a.kind,
        kind_b=b.kind,
        n=a.n,
        k=k,
        permutations=permutations,
        mutual_knn=obs_knn,
        spearman=obs_sp,
        layers_knn=(int(best_knn[0]), int(best_knn[1])),
        layers_spearman=(int(best_sp[0]), int(best_sp[1])),
        p_knn=permutation_p_value(obs_knn, null_knn),
        p_spearman=permutation_p_value(obs_sp, null_sp),
        null_mean_knn=float(null_knn.mean()),
        null_mean_spearman=float(null_sp.mean()),
        tau_knn=tau,
        calibrated_knn=calibrated_score(obs_knn, tau, bounded=True),
        control_knn=float(c_knn.max()),
        control_spearman=float(c_sp.max()),
        control_p_knn=permutation_p_value(float(c_knn.max()), null_knn),
        control_p_spearman=permutation_p_value(float(c_sp.max()), null_sp),
        chance_knn=k / (a.n - 1),
        grid_knn=knn_grid.numpy(),
    )


def embed_2d(distances: torch.Tensor, seed: int = 0, reference: np.ndarray | None = None) -> np.ndarray:
    """2-D metric MDS (scikit-learn) of a precomputed (N, N) dissimilarity matrix, as (N, 2).

    With ``reference`` ((N, 2)), the embedding is rotated/reflected and scaled onto it (orthogonal Procrustes), so
    that panels of different kernels are drawn in the same orientation.
    """
    from prh.experiments.base import require

    manifold = require("sklearn.manifold", "scikit-learn")
    d = distances.to(torch.float64).numpy()
    d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    scale = float(np.median(d[d > 0])) if np.any(d > 0) else 1.0
    mds = manifold.MDS(
        n_components=2,
        metric="precomputed",
        n_init=4,
        init="random",
        random_state=seed,
        normalized_stress="auto",
    )
    xy = mds.fit_transform(d / scale)
    xy = xy - xy.mean(axis=0)
    if reference is not None:
        from scipy.linalg import orthogonal_procrustes

        ref = reference - reference.mean(axis=0)
        rot, _ = orthogonal_procrustes(xy, ref)
        xy = xy @ rot
        norm = float(np.linalg.norm(xy))
        if norm > 0:
            xy = xy * (float(np.linalg.norm(ref)) / norm)
    return xy
