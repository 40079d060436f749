"""The RV coefficient (Escoufier 1973; Robert & Escoufier 1976).

    RV(X, Y) = tr(X X^T Y Y^T) / sqrt(tr((X X^T)^2) tr((Y Y^T)^2)) = ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F).

With ``center=True`` (default) X and Y are the column-centred inputs. Since ``H K H = (H X)(H X)^T`` for the linear
kernel K = X X^T and the centring matrix H, this is *exactly* linear CKA with the biased HSIC
(``cka(A, B, kernel="linear", unbiased=False)``) for every input — the two names describe the same number
(Kornblith et al. 2019 note this). With ``center=False`` it is Escoufier's RV of the raw configurations, which equals
linear biased CKA if and only if the inputs are already column-centred (otherwise the uncentred products include
the means' outer products).

The per-layer cache is the (N, N) float64 Gram matrix (centred or not) and its squared Frobenius norm, so a sweep
is one batched matrix of Frobenius inner products.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.cka import inner_grid
from prh.metrics.kernels import inner_products, require_positive
from prh.metrics.registry import MetricSpec, register


@dataclass(frozen=True)
class GramCache:
    """Per-layer cache: (N, N) float64 Gram matrix (of the centred features when centring) and tr(G^2)."""

    gram: torch.Tensor
    self_term: float


def _check_rv_kwargs(n: int, center: bool = True) -> dict:
    if not isinstance(center, bool):
        raise InputError(f"center={center!r} must be True or False.")
    return {"center": center}


def _rv_cache(x: torch.Tensor, center: bool) -> GramCache:
    x = x.to(torch.float64)
    scale = float(x.norm()) ** 4
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    g = inner_products(x)
    self_term = float((g * g).sum())
    if self_term <= 1e-24 * max(scale, 1e-300):
        self_term = 0.0  # constant features: rounding residue of the centring, not signal
    return GramCache(g, self_term)


def _rv_grid(xs: Sequence[GramCache], ys: Sequence[GramCache], center: bool) -> torch.Tensor:
    for side, caches in (("A", xs), ("B", ys)):
        for idx, c in enumerate(caches):
            require_positive(c.self_term, f"tr((X X^T)^2) of {side} layer {idx}")
    cross = inner_grid([c.gram for c in xs], [c.gram for c in ys])
    nx = torch.tensor([c.self_term for c in xs], dtype=torch.float64).sqrt()
    ny = torch.tensor([c.self_term for c in ys], dtype=torch.float64).sqrt()
    return (cross / (nx[:, None] * ny[None, :])).clamp(0.0, 1.0)


def rv(A: object, B: object, center: bool = True) -> float:
    """RV coefficient of two configurations.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N, used as given.
    center : centre the columns first (default). Then ``rv(A, B) == cka(A, B)`` (linear kernel, biased HSIC)
        exactly; with ``center=False`` the two agree iff A and B are already column-centred.

    Returns
    -------
    float in [0, 1]; 1 iff B equals A up to an orthogonal map and an isotropic scaling (and a translation when
    centring). Symmetric. Not invariant to general invertible linear maps. Biased upwards for independent inputs
    when D is not small compared with N (like biased CKA).
    """
    return score_pair(RV, A, B, center=center)


RV = register(
    MetricSpec(
        name="rv",
        func=rv,
        layer_cache=_rv_cache,
        grid=_rv_grid,
        check_kwargs=_check_rv_kwargs,
        value_range=(0.0, 1.0),
        symmetric=True,
        uses_k=False,
        description="RV coefficient tr(XX'YY') / sqrt(tr((XX')^2) tr((YY')^2)) on centred features (= linear CKA)",
        defaults={"center": True},
    )
)
