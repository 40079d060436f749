"""SVCCA (Raghu et al. 2017): SVD of each representation, then CCA between the two subspaces.

prh follows the definition exactly: standardise each feature (mean 0, unit standard deviation), take the top
``dim`` left singular vectors by an exact SVD, and average the ``dim`` canonical correlations between the two
orthonormal bases, which are the singular values of ``U_A^T U_B``. Deterministic. The reference uses a randomised
low-rank SVD plus random noise, which is systematically off (e.g. 0.38 where the exact value is 0.50).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh._validation import check_int
from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register


@dataclass(frozen=True)
class SingularBasis:
    """Per-layer cache: (N, dim) float64 orthonormal basis of the top ``dim`` standardised directions."""

    basis: torch.Tensor


def _check_svcca_kwargs(n: int, dim: int = 10) -> dict:
    dim = check_int(dim, "dim", minimum=1, hint="the number of SVD directions kept")
    if dim > n - 1:
        raise InputError(
            f"dim={dim} must be at most N-1={n - 1} (centred data of N samples has rank <= N-1)."
        )
    if 2 * dim > n - 1:
        raise InputError(
            f"dim={dim} is too large for N={n} samples: two {dim}-dimensional spaces of centred data share at "
            f"least {2 * dim - (n - 1)} directions, whose canonical correlations are 1 for any inputs (independent "
            f"noise would score near 1); use dim <= {(n - 1) // 2}."
        )
    return {"dim": dim}


def _svcca_cache(x: torch.Tensor, dim: int) -> SingularBasis:
    x = x.to(torch.float64)
    x = x - x.mean(dim=0)
    x = x / (x.std(dim=0) + 1e-8)
    u, s, _ = torch.linalg.svd(x, full_matrices=False)
    rank = int((s > s[0] * 1e-10).sum()) if s.numel() and s[0] > 0 else 0
    if rank == 0:
        raise InputError(
            "the features are constant across samples (zero variance in every column), so svcca is undefined; "
            "remove constant layers or check that the inputs differ."
        )
    if rank < dim:
        raise InputError(
            f"svcca dim={dim} exceeds the rank ({rank}) of the standardised features (D={x.shape[1]}); "
            f"use dim <= {rank}."
        )
    return SingularBasis(u[:, :dim])


def _permute_basis(cache: SingularBasis, perm: torch.Tensor, inv: torch.Tensor) -> SingularBasis:
    """The cache of ``Y[perm]``: rows ``U[perm]`` (the SVD of ``P X`` is ``P U S V^T``; standardising commutes)."""
    return SingularBasis(cache.basis.index_select(0, perm))


def _svcca_grid(xs: Sequence[SingularBasis], ys: Sequence[SingularBasis], dim: int) -> torch.Tensor:
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    for i, a in enumerate(xs):
        for j, b in enumerate(ys):
            grid[i, j] = torch.linalg.svdvals(a.basis.T @ b.basis).clamp(max=1.0).mean().cpu()
    return grid


def svcca(A: object, B: object, dim: int = 10) -> float:
    """Singular vector canonical correlation analysis.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) arrays, same N; ``dim <= min(rank)`` of each standardised input.
    dim : number of top singular directions kept (the reference's ``cca_dim``).

    Returns
    -------
    float in [0, 1]: the mean of the ``dim`` canonical correlations; 1 when the two top-``dim`` subspaces
    coincide. Symmetric; invariant to orthogonal maps and isotropic scaling of the standardised features.
    """
    return score_pair(SVCCA, A, B, dim=dim)


SVCCA = register(
    MetricSpec(
        name="svcca",
        display_name="SVCCA",
        properties=MetricProperties(
            definition="mean canonical correlation of the top-dim SVD directions of the column-standardised inputs (exact SVD)",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=NO,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            null="> 0, grows with dim/N",
            cost="O(N D min(N, D)) per layer (SVD), O(N dim²) per pair",
            prefer="comparison with SVCCA papers; numbers differ from the reference's randomised SVD",
        ),
        func=svcca,
        layer_cache=_svcca_cache,
        grid=_svcca_grid,
        permute_cache=_permute_basis,
        check_kwargs=_check_svcca_kwargs,
        value_range=(0.0, 1.0),
        symmetric=True,
        uses_k=False,
        scale_free=any_scale,
        description="mean canonical correlation of the top-dim SVD subspaces (exact SVD, deterministic)",
        defaults={"dim": 10},
    )
)
