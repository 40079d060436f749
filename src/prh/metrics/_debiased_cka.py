"""Linear CKA debiased for both input (sample) and feature (neuron) sampling, after Chun, Canatar, Chung & Lee
(2025), "Estimating Neural Representation Alignment from Sparsely Sampled Inputs and Features" (arXiv 2502.15104).

Song et al.'s unbiased HSIC removes the bias from sampling finitely many *inputs* (the terms of tr(K L) where sample
indices coincide). When the D columns of a representation are themselves a sample of a larger population of
features (neurons, units), the self term HSIC(X, X) = (1/D^2) sum_{a,b} HSIC(x_a x_a^T, x_b x_b^T) also contains the
D "diagonal" pairs a = b, whose fourth moments do not vanish as N grows; they bias HSIC(X, X) upwards and CKA
downwards, the more so the fewer the features. The estimator keeps only distinct feature pairs:

    HSIC_d(X, X) = D / (D - 1) * [ HSIC_u(K, K) - sum_a HSIC_u(x_a x_a^T, x_a x_a^T) ],

with HSIC_u Song's unbiased estimator (on the linear kernel K = X X^T) and x_a column a of X. The cross term
between two *different* populations has independent columns and needs no feature correction, so

    debiased_cka(A, B) = HSIC_u(K_A, K_B) / sqrt(HSIC_d(A, A) HSIC_d(B, B))        (columns="independent").

With ``columns="shared"`` column a of A and column a of B are the same feature (e.g. the same neurons in two
conditions, or a layer against itself); the cross term then gets the same distinct-pair correction and
``debiased_cka(A, A, columns="shared") == 1`` exactly. With the default ``"independent"`` a layer compared with
itself violates the assumption and scores above 1. See docs/metrics.md for what was implemented and why.

Everything is in float64 (the corrections subtract nearly equal terms). Every per-feature term has a closed form
in O(N) on column-centred data (HSIC_u is translation invariant), so the correction costs O(N D) per layer.
Like :mod:`prh.metrics.cka`, two exact paths: ``path="gram"`` (U-centred (N, N) kernels) and ``path="features"``
(feature-space products, no (N, N) matrix; the default above :data:`prh.metrics._cka.LARGE_N` samples).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from prh._validation import check_choice
from prh.errors import InputError
from prh.metrics._cka import LARGE_N, PATHS, inner_grid
from prh.metrics._common import score_pair
from prh.metrics.feature_space import FeatureMoments, hsic_terms, moments, per_feature_hsic
from prh.metrics.kernels import inner_products, u_center
from prh.metrics.null import permute_square
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, any_scale, register


@dataclass(frozen=True)
class DebiasedCache:
    """Per-layer cache.

    moments : the layer's :class:`~prh.metrics.feature_space.FeatureMoments` (features as given, column means,
        centred row norms); the per-feature terms are computed from it by row blocks.
    u_gram : (N, N) float64 U-centred linear kernel (``<u_gram_a, u_gram_b> / (N (N-3))`` = Song's HSIC_u) on
        the Gram path; None on the feature-space path.
    self_term : HSIC_d(X, X), the feature-debiased self term (unscaled by 1/(N (N-3)), like the cross terms).
    """

    moments: FeatureMoments
    u_gram: torch.Tensor | None
    self_term: float


def _check_kwargs(n: int, columns: str = "independent", path: str = "auto") -> dict:
    columns = check_choice(columns, "columns", ["independent", "shared"])
    if n < 4:
        raise InputError(f"debiased_cka uses unbiased HSIC, which needs at least N=4 samples, got N={n}.")
    path = check_choice(path, "path", PATHS)
    if path == "auto":
        path = "features" if n > LARGE_N else "gram"
    return {"columns": columns, "path": path}


def _cache(x: torch.Tensor, columns: str, path: str) -> DebiasedCache:
    d = x.shape[1]
    if d < 2:
        raise InputError(
            "debiased_cka corrects for sampling features, which needs at least D=2 features; use unbiased_cka."
        )
    m = moments(x)
    if path == "features":
        uc = None
        song = float(hsic_terms([m], [m], unbiased=True)[1][0])
    else:
        x64 = x.to(torch.float64)
        uc = u_center(inner_products(x64 - m.mean))
        song = float((uc * uc).sum())
    self_term = d / (d - 1) * (song - per_feature_hsic(m, m))
    scale = float(x.to(torch.float64).norm()) ** 4
    if abs(self_term) <= 1e-24 * max(scale, 1e-300):
        self_term = 0.0
    return DebiasedCache(m, uc, self_term)


def _permute(cache: DebiasedCache, perm: torch.Tensor, inv: torch.Tensor) -> DebiasedCache:
    """The cache of ``Y[perm]``: rows of the features and row norms, and ``u(K)[perm][:, perm]`` (centring and
    U-centring commute with permutations; the self term is unchanged)."""
    m = cache.moments
    moved = FeatureMoments(m.x.index_select(0, perm), m.mean, m.row_sq.index_select(0, perm), m.gram_norm)
    u_gram = None if cache.u_gram is None else permute_square(cache.u_gram, perm)
    return DebiasedCache(moved, u_gram, cache.self_term)


def _grid(xs: Sequence[DebiasedCache], ys: Sequence[DebiasedCache], columns: str, path: str) -> torch.Tensor:
    for side, caches in (("A", xs), ("B", ys)):
        for idx, c in enumerate(caches):
            if not c.self_term > 0.0:
                raise InputError(
                    f"the feature-debiased self term HSIC_d({side}, {side}) of layer {idx} is "
                    f"{c.self_term:.3g} <= 0, so debiased_cka is undefined. Its features look like constant or "
                    f"isotropic noise (no structure shared across features), or there are too few samples/features "
                    f"to estimate it; use unbiased_cka or more samples."
                )
    if path == "features":
        cross = hsic_terms([c.moments for c in xs], [c.moments for c in ys], unbiased=True)[0]
    else:
        cross = inner_grid([c.u_gram for c in xs], [c.u_gram for c in ys])
    if columns == "shared":
        for i, a in enumerate(xs):
            for j, b in enumerate(ys):
                d = a.moments.x.shape[1]
                if b.moments.x.shape[1] != d:
                    raise InputError(
                        f"columns='shared' pairs column a of A with column a of B, so both need the same number "
                        f"of features; got D_A={d} (layer {i}) and D_B={b.moments.x.shape[1]} (layer {j}). "
                        f"Use columns='independent' for different feature sets."
                    )
                diag = per_feature_hsic(a.moments, b.moments)
                cross[i, j] = d / (d - 1) * (float(cross[i, j]) - diag)
    nx = torch.tensor([c.self_term for c in xs], dtype=torch.float64).sqrt()
    ny = torch.tensor([c.self_term for c in ys], dtype=torch.float64).sqrt()
    return cross / (nx[:, None] * ny[None, :])


def _cache_bytes(n: int, d: int, params: dict) -> float:
    if params["path"] == "features":
        return 8.0 * (2 * n + d * d)
    return 8.0 * (3 * n * n + n * d)


def debiased_cka(A: object, B: object, columns: str = "independent", path: str = "auto") -> float:
    """Linear CKA corrected for finite samples *and* finite features (Chun et al. 2025), in float64.

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N >= 4, D >= 2, used as given.
    columns : ``"independent"`` (default: A's and B's features are different populations, e.g. two models;
        only the self terms are feature-corrected) or ``"shared"`` (column a of A and of B is the same feature;
        the cross term is corrected too and ``debiased_cka(A, A, columns="shared") == 1``; needs D_a == D_b).
    path : ``"gram"``, ``"features"`` (no (N, N) matrix) or ``"auto"`` (features above N=4096); same number.

    Returns
    -------
    float, about 0 in expectation for independent inputs, not bounded by 1 (an estimate of the population CKA of
    the infinitely-wide representations; with few features it can exceed 1). Symmetric. Invariant to isotropic
    scaling, translations, sample permutations and permutations/sign flips of the features, **not** to rotations
    of the feature space (the correction treats the given columns as the sampled units). A non-positive debiased
    self term (too few samples/features to estimate it) raises :class:`~prh.errors.InputError`.
    """
    return score_pair(DEBIASED_CKA, A, B, columns=columns, path=path)


DEBIASED_CKA = register(
    MetricSpec(
        name="debiased_cka",
        display_name="debiased CKA",
        properties=MetricProperties(
            definition="linear CKA with unbiased HSIC and the self terms restricted to distinct feature pairs (Chun et al. 2025)",
            value_range="unbounded; ≈ [-1, 1] when D is large",
            symmetric=True,
            identity=False,
            orthogonal=NO,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            null="≈ 0",
            cost="O(N² D) per layer, O(N²) per pair, or O(N D²) per layer and O(N Dₓ D_y) per pair with no N×N matrix (path='features', the default above N = 4096)",
            prefer="few features (neurons/units) sampled from a larger population; f(A, A) = 1 needs columns='shared'",
        ),
        func=debiased_cka,
        layer_cache=_cache,
        grid=_grid,
        check_kwargs=_check_kwargs,
        value_range=(float("-inf"), float("inf")),
        symmetric=True,
        uses_k=False,
        scale_free=any_scale,
        bounded=False,
        null_expectation=lambda n, kw: 0.0,
        description="linear CKA debiased for sample and feature (neuron) sampling (Chun et al. 2025), float64",
        defaults={"columns": "independent", "path": "auto"},
        permute_cache=_permute,
        cache_bytes=_cache_bytes,
        memory_hint="use path='features' (no N x N matrix)",
    )
)
