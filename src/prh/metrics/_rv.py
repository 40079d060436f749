"""The RV coefficient (Escoufier 1973; Robert & Escoufier 1976).

    RV(X, Y) = tr(X X^T Y Y^T) / sqrt(tr((X X^T)^2) tr((Y Y^T)^2)) = ||X^T Y||_F^2 / (||X^T X||_F ||Y^T Y||_F).

With ``center=True`` (default) X and Y are the column-centred inputs. Since ``H K H = (H X)(H X)^T`` for the linear
kernel K = X X^T and the centring matrix H, this is *exactly* linear CKA with the biased HSIC
(``cka(A, B, kernel="linear", unbiased=False)``) for every input — the two names describe the same number
(Kornblith et al. 2019 note this). With ``center=False`` it is Escoufier's RV of the raw configurations, which equals
linear biased CKA if and only if the inputs are already column-centred (otherwise the uncentred products include
the means' outer products).

The per-layer cache is the (N, N) float64 Gram matrix (centred or not) and its squared Frobenius norm, so a sweep
is one batched matrix of Frobenius inner products (``path="gram"``); or, with ``path="features"`` (the default above
:data:`prh.metrics._cka.LARGE_N` samples), ``||X^T Y||_F^2`` is accumulated in feature space
(:mod:`prh.metrics.feature_space`) with no (N, N) matrix. Same number either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh._validation import check_choice
from prh.errors import InputError
from prh.metrics._cka import LARGE_N, PATHS, inner_grid
from prh.metrics._common import score_pair
from prh.metrics.feature_space import FeatureMoments, cross_norms, moments
from prh.metrics.kernels import inner_products, require_positive
from prh.metrics.null import permute_square
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register


@dataclass(frozen=True)
class GramCache:
    """Per-layer cache: (N, N) float64 Gram matrix (of the centred features when centring) and tr(G^2)."""

    gram: torch.Tensor
    self_term: float


def _check_rv_kwargs(n: int, center: bool = True, path: str = "auto") -> dict:
    if not isinstance(center, bool):
        raise InputError(f"center={center!r} must be True or False.")
    path = check_choice(path, "path", PATHS)
    if path == "auto":
        path = "features" if n > LARGE_N else "gram"
    return {"center": center, "path": path}


def _rv_cache(x: torch.Tensor, center: bool, path: str) -> GramCache | FeatureMoments:
    if path == "features":
        return moments(x, center=center)
    x = x.to(torch.float64)
    scale = float(x.norm()) ** 4
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    g = inner_products(x)
    self_term = float((g * g).sum())
    if self_term <= 1e-24 * max(scale, 1e-300):
        self_term = 0.0  # constant features: rounding residue of the centring, not signal
    return GramCache(g, self_term)


def _self_term(c: GramCache | FeatureMoments) -> float:
    if isinstance(c, GramCache):
        return c.self_term
    # the same rounding floor as the Gram path: a constant layer leaves only the centring's residue
    scale = float(c.x.to(torch.float64).norm()) ** 4
    return c.gram_norm if c.gram_norm > 1e-24 * max(scale, 1e-300) else 0.0


def _rv_grid(xs: Sequence, ys: Sequence, center: bool, path: str = "gram") -> torch.Tensor:
    selfs = []
    for side, caches in (("A", xs), ("B", ys)):
        terms = [_self_term(c) for c in caches]
        for idx, value in enumerate(terms):
            require_positive(value, f"tr((X X^T)^2) of {side} layer {idx}")
        selfs.append(torch.tensor(terms, dtype=torch.float64).sqrt())
    if path == "features":
        cross = cross_norms(xs, ys)
    else:
        cross = inner_grid([c.gram for c in xs], [c.gram for c in ys])
    return (cross / (selfs[0][:, None] * selfs[1][None, :])).clamp(0.0, 1.0)


def _permute(
    cache: GramCache | FeatureMoments, perm: torch.Tensor, inv: torch.Tensor
) -> GramCache | FeatureMoments:
    """The cache of ``Y[perm]``: ``G[perm][:, perm]``, or the permuted rows (the self term is unchanged)."""
    if isinstance(cache, FeatureMoments):
        return FeatureMoments(
            cache.x.index_select(0, perm), cache.mean, cache.row_sq.index_select(0, perm), cache.gram_norm
        )
    return GramCache(permute_square(cache.gram, perm), cache.self_term)


def _cache_bytes(n: int, d: int, params: dict) -> float:
    if params["path"] == "features":
        return 8.0 * (2 * n + d * d)
    return 8.0 * (2 * n * n + n * d)


def rv(A: object, B: object, center: bool = True, path: str = "auto") -> float:
    """RV coefficient of two configurations.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N, used as given.
    center : centre the columns first (default). Then ``rv(A, B) == cka(A, B)`` (linear kernel, biased HSIC)
        exactly; with ``center=False`` the two agree iff A and B are already column-centred.
    path : ``"gram"``, ``"features"`` (no (N, N) matrix) or ``"auto"`` (features above N=4096); same number.

    Returns
    -------
    float in [0, 1]; 1 iff B equals A up to an orthogonal map and an isotropic scaling (and a translation when
    centring). Symmetric. Not invariant to general invertible linear maps. Biased upwards for independent inputs
    when D is not small compared with N (like biased CKA).
    """
    return score_pair(RV, A, B, center=center, path=path)


RV = register(
    MetricSpec(
        name="rv",
        display_name="RV coefficient",
        properties=MetricProperties(
            definition="tr(XX'YY') / sqrt(tr((XX')²) tr((YY')²)), X, Y column-centred (equals linear biased CKA)",
            value_range="[0, 1]",
            symmetric=True,
            identity=True,
            orthogonal=YES,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            null="> 0, grows with D/N (as cka)",
            cost="O(N² D) per layer, O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
            prefer="statistics literature name for linear CKA; center=False gives Escoufier's uncentred RV",
        ),
        func=rv,
        layer_cache=_rv_cache,
        grid=_rv_grid,
        check_kwargs=_check_rv_kwargs,
        value_range=(0.0, 1.0),
        symmetric=True,
        uses_k=False,
        scale_free=any_scale,
        description="RV coefficient tr(XX'YY') / sqrt(tr((XX')^2) tr((YY')^2)) on centred features (= linear CKA)",
        defaults={"center": True, "path": "auto"},
        permute_cache=_permute,
        cache_bytes=_cache_bytes,
        memory_hint="use path='features' (no N x N matrix)",
    )
)
