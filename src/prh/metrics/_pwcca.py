"""Projection-weighted CCA (Morcos, Raghu & Bengio 2018).

CCA between the centred representations gives canonical correlations rho_1 >= ... >= rho_m (m = min of the two
ranks) and, for the first representation A, orthonormal canonical variates h_1..h_m (N-vectors in A's column
space). Each direction is weighted by how much of A's neurons it accounts for,

    alpha_i = sum_j |<h_i, a_j>|   (a_j = centred column j of A),   PWCCA = sum_i alpha_i rho_i / sum_i alpha_i,

so directions that carry A's activity count more than the many weak ones plain mean-CCA averages in. The weights
come from A: PWCCA is **not symmetric**. The canonical correlations are invariant to invertible linear maps of
either side, the weights only to those of B (and to scaling / permuting / sign-flipping A's neurons).

CCA degenerates when the two ranks add up to more than N-1 (centred data live in an (N-1)-dimensional space, so
two column spaces of ranks r_a + r_b > N-1 share at least r_a + r_b - (N-1) directions): that many canonical
correlations are 1 for any inputs, independent noise included (D >= N gives 1.0 for every pair). Such pairs are
refused; ``dim=d`` first reduces each side to its top d principal directions (as SVCCA does; d <= (N-1)/2 always
fits), which makes high-dimensional layers (D close to or above N, as in most networks at N ~ 1000) usable.

Per-layer cache: an orthonormal basis Q (N x r) of the centred column space and the projections Q^T A_c (r x D);
a pair then costs one (r_a x N)(N x r_b) product and one r_a x r_b SVD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh._validation import check_int
from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.properties import B_ONLY, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register

#: Singular values below this fraction of the largest are treated as zero (rank truncation).
RANK_TOL = 1e-10


@dataclass(frozen=True)
class CcaBasis:
    """Per-layer cache: ``basis`` (N, r) orthonormal column-space basis; ``proj`` (r, D) = basis^T A_centred."""

    basis: torch.Tensor
    proj: torch.Tensor


def _check_pwcca_kwargs(n: int, dim: int | None = None) -> dict:
    """``{}`` for the full column spaces (the default stays implicit), ``{"dim": d}`` for a PCA reduction."""
    if dim is None:
        return {}
    dim = check_int(
        dim, "dim", minimum=1, hint="a positive integer: principal directions kept per side, or None"
    )
    if 2 * dim > n - 1:
        raise InputError(
            f"dim={dim} is too large for N={n} samples: two {dim}-dimensional spaces of centred data share at "
            f"least {2 * dim - (n - 1)} directions, whose canonical correlations are 1 for any inputs; use "
            f"dim <= {(n - 1) // 2}."
        )
    return {"dim": dim}


def cca_basis(x: torch.Tensor, dim: int | None = None) -> CcaBasis:
    """Orthonormal basis of the centred column space of ``x`` ((N, D)), float64, with numerical rank truncation;
    with ``dim``, of its top ``dim`` principal directions (fewer when the rank is lower)."""
    xc = x.to(torch.float64)
    xc = xc - xc.mean(dim=0, keepdim=True)
    u, s, _ = torch.linalg.svd(xc, full_matrices=False)
    scale = float(x.to(torch.float64).abs().max())
    rank = int((s > max(float(s[0]) * RANK_TOL, 1e-13 * scale)).sum()) if s.numel() else 0
    if rank == 0:
        raise InputError(
            "the features are constant across samples (rank 0 after centring), so CCA is undefined. "
            "Remove constant layers or check the inputs."
        )
    basis = u[:, : rank if dim is None else min(rank, dim)]
    return CcaBasis(basis, basis.T @ xc)


def canonical(a: CcaBasis, b: CcaBasis) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical correlations (m,) and the A-side weights alpha (m,) (unnormalised) of one pair of caches."""
    u, rho, _ = torch.linalg.svd(a.basis.T @ b.basis, full_matrices=False)
    alpha = (u.T @ a.proj).abs().sum(dim=1)
    return rho.clamp(0.0, 1.0), alpha


def require_cca_defined(
    ranks_a: Sequence[int], ranks_b: Sequence[int], n: int, metric: str, fix: str
) -> None:
    """Refuse (:class:`InputError`) layer pairs whose centred ranks add up to more than N-1 (``ranks_*`` per layer):
    their spaces share ``r_a + r_b - (N-1)`` directions, whose canonical correlations are 1 for any inputs."""
    ra, rb = max(ranks_a), max(ranks_b)
    if ra + rb <= n - 1:
        return
    i, j = list(ranks_a).index(ra), list(ranks_b).index(rb)
    raise InputError(
        f"{metric} is undefined here: layer {i} of A has rank {ra} and layer {j} of B rank {rb} after centring, "
        f"more than N-1={n - 1} together, so at least {ra + rb - (n - 1)} canonical correlations are 1 whatever "
        f"the data (independent noise would score near 1). {fix}"
    )


def _pwcca_grid(xs: Sequence[CcaBasis], ys: Sequence[CcaBasis], dim: int | None = None) -> torch.Tensor:
    n = xs[0].basis.shape[0]
    require_cca_defined(
        [a.basis.shape[1] for a in xs],
        [b.basis.shape[1] for b in ys],
        n,
        "pwcca",
        f"Reduce each side first: pwcca(..., dim=d) keeps the top d principal directions (d <= {(n - 1) // 2}; "
        "prh score --dim d), or use more samples than features, or svcca.",
    )
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            rho, alpha = canonical(a, b)
            grid[i, j] = float((alpha * rho).sum() / alpha.sum())
    return grid


def pwcca(A: object, B: object, dim: int | None = None) -> float:
    """Projection-weighted canonical correlation analysis.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N, used as given (centred internally).
        When rank(A) + rank(B) > N - 1 (e.g. D >= N) some canonical correlations are 1 by construction: such
        inputs raise :class:`~prh.errors.InputError` unless ``dim`` reduces them.
    dim : None (default: the full centred column spaces) or the number of top principal directions of each side
        to keep first (``1 <= dim <= (N-1)/2``), as SVCCA does; the weights then come from A's reduced space.

    Returns
    -------
    float in [0, 1]: canonical correlations weighted by how much of A's (centred) neuron activity each canonical
    direction of A accounts for. 1 for identical inputs (more generally when B = A M + c for invertible M).
    **Not symmetric** (weights from A). Invariant to invertible linear maps and translations of B, and to
    translations, isotropic scaling and neuron permutations/sign flips of A, not to rotations of A.
    """
    return score_pair(PWCCA, A, B, dim=dim)


PWCCA = register(
    MetricSpec(
        name="pwcca",
        display_name="PWCCA",
        properties=MetricProperties(
            definition="canonical correlations weighted by how much of A's centred neuron activity each canonical variate explains",
            value_range="[0, 1]",
            symmetric=False,
            identity=True,
            orthogonal=B_ONLY,
            isotropic_scaling=YES,
            invertible_linear=B_ONLY,
            translation=YES,
            null="> 0, → 1 as rank(A) + rank(B) → N",
            cost="O(N D min(N, D)) per layer (SVD), O(N r² + r³) per pair",
            prefer="comparison with PWCCA papers; only with D ≪ N (CCA overfits otherwise)",
        ),
        func=pwcca,
        layer_cache=cca_basis,
        grid=_pwcca_grid,
        check_kwargs=_check_pwcca_kwargs,
        value_range=(0.0, 1.0),
        symmetric=False,
        uses_k=False,
        scale_free=any_scale,
        description="projection-weighted CCA (Morcos et al. 2018); weights from A, not symmetric",
        defaults={},
    )
)
