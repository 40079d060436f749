"""Orthogonal Procrustes similarity: the angular shape metric of Williams et al. (2021) turned into a similarity.

Centre each representation (column means 0), scale it to unit Frobenius norm, and zero-pad the narrower one. The
best orthogonal alignment ``min_Q ||X - Y Q||_F`` is reached when ``<X, Y Q>`` equals the nuclear norm
``||X^T Y||_*`` (sum of singular values), which lies in [0, 1]. The angle ``theta = arccos(||X^T Y||_*)`` is the
Procrustes angular distance (a metric on shapes); prh reports

    procrustes = 1 - theta * 2 / pi  in [0, 1],

1 when the representations are equal up to rotation/reflection, translation and isotropic scaling, 0 when every
direction of one is orthogonal to every direction of the other.

Zero-padding never changes ``||X^T Y||_*``, so it is implicit. The per-layer cache is the centred, normalised
matrix itself when D <= N, otherwise ``U S`` of its thin SVD (N x N, the same singular values of ``X^T Y`` at a
smaller size), so a pair costs one (r_x x N)(N x r_y) product and one small SVD.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register


@dataclass(frozen=True)
class ShapeCache:
    """Per-layer cache: (N, r) float64 matrix M with M M^T = X X^T for the centred unit-norm X, r = min(N, D)."""

    factor: torch.Tensor


def _no_kwargs(n: int) -> dict:
    return {}


def centered_unit(x: torch.Tensor, what: str = "the features") -> torch.Tensor:
    """``x`` ((N, D)) centred over samples and scaled to unit Frobenius norm, float64; constant input raises."""
    x = x.to(torch.float64)
    xc = x - x.mean(dim=0, keepdim=True)
    norm = xc.norm()
    if not float(norm) > 1e-12 * float(x.norm() + 1e-300):
        raise InputError(
            f"{what} are constant across samples (zero variance after centring), so the normalised score is "
            f"undefined (0/0). Remove constant layers or check the inputs."
        )
    return xc / norm


def _shape_cache(x: torch.Tensor) -> ShapeCache:
    xn = centered_unit(x)
    n, d = xn.shape
    if d <= n:
        return ShapeCache(xn)
    u, s, _ = torch.linalg.svd(xn, full_matrices=False)
    return ShapeCache(u * s)


def nuclear_grid(xs: Sequence[torch.Tensor], ys: Sequence[torch.Tensor]) -> torch.Tensor:
    """(Lx, Ly) float64 grid of nuclear norms ||xs[i]^T ys[j]||_* (batched over y layers of equal width)."""
    grid = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    groups: dict[int, list[int]] = {}
    for j, y in enumerate(ys):
        groups.setdefault(y.shape[1], []).append(j)
    for i, x in enumerate(xs):
        for idx in groups.values():
            stacked = torch.stack([ys[j] for j in idx])  # (c, N, r_y)
            cross = x.T.unsqueeze(0) @ stacked  # (c, r_x, r_y)
            grid[i, idx] = torch.linalg.svdvals(cross).sum(dim=1).cpu()
    return grid


def _procrustes_grid(xs: Sequence[ShapeCache], ys: Sequence[ShapeCache]) -> torch.Tensor:
    nuc = nuclear_grid([c.factor for c in xs], [c.factor for c in ys]).clamp(0.0, 1.0)
    return 1.0 - torch.arccos(nuc) * (2.0 / math.pi)


def procrustes(A: object, B: object) -> float:
    """Angular orthogonal-Procrustes similarity.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N, used as given; the narrower one is
        (implicitly) zero-padded.

    Returns
    -------
    float in [0, 1]: ``1 - (2 / pi) arccos(||X^T Y||_*)`` with X, Y the centred, unit-Frobenius-norm inputs.
    1 iff B equals A up to an orthogonal map, a translation and an isotropic scaling. Symmetric. Not invariant to
    general invertible linear maps. Constant inputs raise :class:`~prh.errors.InputError`.
    """
    return score_pair(PROCRUSTES, A, B)


PROCRUSTES = register(
    MetricSpec(
        name="procrustes",
        display_name="Procrustes",
        properties=MetricProperties(
            definition="1 - (2/π) arccos(\\|X^T Y\\|_*), X, Y centred, unit Frobenius norm, narrower side zero-padded",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            null="> 0, grows with D/N",
            cost="O(N D min(N, D)) per layer (SVD if D > N), O(N r² + r³) per pair, r = min(N, D)",
            prefer="a proper shape metric (angle obeys the triangle inequality); sensitive to all directions",
        ),
        func=procrustes,
        layer_cache=_shape_cache,
        grid=_procrustes_grid,
        check_kwargs=_no_kwargs,
        value_range=(0.0, 1.0),
        symmetric=True,
        uses_k=False,
        scale_free=any_scale,
        description="angular orthogonal Procrustes similarity 1 - 2/pi * arccos(||X^T Y||_*) (centred, unit norm)",
        defaults={},
    )
)
