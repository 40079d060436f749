"""Projection-weighted CCA (Morcos, Raghu & Bengio 2018).

CCA between the centred representations gives canonical correlations rho_1 >= ... >= rho_m (m = min of the two
ranks) and, for the first representation A, orthonormal canonical variates h_1..h_m (N-vectors in A's column
space). Each direction is weighted by how much of A's neurons it accounts for,

    alpha_i = sum_j |<h_i, a_j>|   (a_j = centred column j of A),   PWCCA = sum_i alpha_i rho_i / sum_i alpha_i,

so directions that carry A's activity count more than the many weak ones plain mean-CCA averages in. The weights
come from A: PWCCA is **not symmetric**. The canonical correlations are invariant to invertible linear maps of
either side, the weights only to those of B (and to scaling / permuting / sign-flipping A's neurons).

CCA degenerates when the two ranks add up to more than N-1 (centred data): then some correlations are 1 for any
inputs. Keep D well below N (e.g. reduce with PCA first) for meaningful numbers.

Per-layer cache: an orthonormal basis Q (N x r) of the centred column space and the projections Q^T A_c (r x D);
a pair then costs one (r_a x N)(N x r_b) product and one r_a x r_b SVD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.properties import B_ONLY, YES, MetricProperties
from prh.metrics.registry import MetricSpec, register

#: Singular values below this fraction of the largest are treated as zero (rank truncation).
RANK_TOL = 1e-10


@dataclass(frozen=True)
class CcaBasis:
    """Per-layer cache: ``basis`` (N, r) orthonormal column-space basis; ``proj`` (r, D) = basis^T A_centred."""

    basis: torch.Tensor
    proj: torch.Tensor


def _no_kwargs(n: int) -> dict:
    return {}


def cca_basis(x: torch.Tensor) -> CcaBasis:
    """Orthonormal basis of the centred column space of ``x`` ((N, D)), float64, with numerical rank truncation."""
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
    basis = u[:, :rank]
    return CcaBasis(basis, basis.T @ xc)


def canonical(a: CcaBasis, b: CcaBasis) -> tuple[torch.Tensor, torch.Tensor]:
    """Canonical correlations (m,) and the A-side weights alpha (m,) (unnormalised) of one pair of caches."""
    u, rho, _ = torch.linalg.svd(a.basis.T @ b.basis, full_matrices=False)
    alpha = (u.T @ a.proj).abs().sum(dim=1)
    return rho.clamp(0.0, 1.0), alpha


def _pwcca_grid(xs: Sequence[CcaBasis], ys: Sequence[CcaBasis]) -> torch.Tensor:
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            rho, alpha = canonical(a, b)
            grid[i, j] = float((alpha * rho).sum() / alpha.sum())
    return grid


def pwcca(A: object, B: object) -> float:
    """Projection-weighted canonical correlation analysis.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N, used as given (centred internally).
        Keep D well below N: when rank(A) + rank(B) > N - 1 some canonical correlations are 1 by construction.

    Returns
    -------
    float in [0, 1]: canonical correlations weighted by how much of A's (centred) neuron activity each canonical
    direction of A accounts for. 1 for identical inputs (more generally when B = A M + c for invertible M).
    **Not symmetric** (weights from A). Invariant to invertible linear maps and translations of B, and to
    translations, isotropic scaling and neuron permutations/sign flips of A, not to rotations of A.
    """
    return score_pair(PWCCA, A, B)


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
        check_kwargs=_no_kwargs,
        value_range=(0.0, 1.0),
        symmetric=False,
        uses_k=False,
        description="projection-weighted CCA (Morcos et al. 2018); weights from A, not symmetric",
        defaults={},
    )
)
