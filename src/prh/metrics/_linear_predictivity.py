"""Cross-validated linear predictivity: how well a ridge regression from A's features predicts B's features on
items it was not fitted on (the encoding-model score of Brain-Score and of cross-validated shape metrics).

The items are split into K folds (one seeded random assignment of positions, ``seed``). For each fold the ridge
map ``B ≈ 1 b0ᵀ + A W`` (unpenalised intercept) is fitted on the other K-1 folds and predicts the held-out fold;
the ridge strength is chosen on the training items only, from a relative grid ``alpha = r * ||A_c||_F²``
(``A_c`` the column-centred A, r in ``alphas``, default 10⁻⁸ … 10², 21 values), so the score does not depend on
A's overall scale. Two selection rules, both closed forms from one SVD of the centred training rows per fold:

* ``alpha_select="gcv"`` (default): generalised cross-validation, ``GCV(alpha) = (||R||²_F / n) /
  (1 - tr(H)/n)²`` with R the training residuals and ``tr(H) = 1 + Σ s²/(s² + alpha)``; O(rank) per alpha.
* ``alpha_select="loo"``: exact leave-one-out error ``mean_i ||R_i||² / (1 - H_ii)²`` (scikit-learn's
  ``RidgeCV`` rule, one alpha shared by all of B's columns); O(n · rank · D_B) per alpha.

The held-out predictions of all folds are pooled, and the score is the mean over B's columns of

* ``score="r2"`` (default): R² = 1 - Σ (y - ŷ)² / Σ (y - ȳ)² (ȳ the mean over all items), or
* ``score="pearson"``: the median over B's columns of the Pearson r of y and ŷ (Brain-Score's convention).

Columns of B that are constant over the items (zero variance) are left out of the average (R² is 0/0 there).

Properties: range (-∞, 1] for R² ([-1, 1] for Pearson); 1 when B is an exact affine map of A and D_A is below
the training-fold size; not symmetric (``linear_predictivity_sym`` is the mean of both directions); invariant to
translations of A and B, to isotropic scaling of A and of B, and to rotations of A (ridge is rotation-equivariant);
not invariant to rotations of B (the per-column R² average changes) nor to general invertible maps of A (ridge
penalises A's directions by their variance; only the alpha -> 0 limit, ordinary least squares, is invariant). The
folds are drawn over positions, so permuting the items of both sides redraws them: the score changes by fold
noise, its expectation does not. Under independence the expected held-out R² is at or below 0 (a fitted map
predicts noise worse than the mean).

Per-layer cache: the fold assignment, for each fold the thin SVD of the centred training rows and the held-out rows
projected on its right singular vectors (the predictor role), and the raw rows (the target role). The permutation
rule re-indexes the target rows of B (``Y[perm]``), so the permutation null re-uses A's SVDs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from prh._validation import check_choice, check_int
from prh.errors import InputError
from prh.metrics._common import score_pair
from prh.metrics.properties import NO, YES, MetricProperties
from prh.metrics.registry import MetricSpec, register

#: The default relative ridge grid r (alpha = r * ||A_c||_F²).
DEFAULT_ALPHAS: tuple[float, ...] = tuple(float(10.0**e) for e in np.arange(-8.0, 2.01, 0.5))
ALPHA_RULES = ("gcv", "loo")
SCORES = ("r2", "pearson")


@dataclass(frozen=True)
class FoldBasis:
    """One fold of a predictor layer: training rows' thin SVD and the held-out rows in its basis."""

    train: torch.Tensor  # (n_tr,) long
    test: torch.Tensor  # (n_te,) long
    u: torch.Tensor  # (n_tr, r) left singular vectors of the centred training rows
    s: torch.Tensor  # (r,) singular values
    test_proj: torch.Tensor  # (n_te, r) (x_test - mean_train) @ V


@dataclass(frozen=True)
class PredictivityCache:
    """Per-layer cache: ``folds`` (None for a permuted target-only cache), ``scale`` = ||x_c||_F², ``y`` the rows."""

    folds: tuple[FoldBasis, ...] | None
    scale: float
    y: torch.Tensor  # (N, D) float64


def fold_ids(n: int, folds: int, seed: int) -> np.ndarray:
    """(n,) int fold of each position: a seeded random permutation cut into ``folds`` near-equal parts."""
    order = np.random.default_rng(seed).permutation(n)
    ids = np.empty(n, dtype=np.int64)
    for f, part in enumerate(np.array_split(order, folds)):
        ids[part] = f
    return ids


def fold_indices(n: int, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """[(train, test)] index arrays (sorted) of the K folds, as used by the metric (for external checks)."""
    ids = fold_ids(n, folds, seed)
    return [(np.flatnonzero(ids != f), np.flatnonzero(ids == f)) for f in range(folds)]


def _check_kwargs(
    n: int,
    folds: int = 5,
    alpha_select: str = "gcv",
    score: str = "r2",
    seed: int = 0,
    alphas: Sequence[float] | None = None,
) -> dict:
    folds = check_int(folds, "folds", minimum=2, hint="K of the K-fold cross-validation over items")
    if n < 2 * folds or n - -(-n // folds) < 3:
        need = max(2 * folds, 4)
        raise InputError(
            f"folds={folds} needs at least {need} items, got N={n}; use fewer folds or more items."
        )
    out = {
        "folds": folds,
        "alpha_select": check_choice(alpha_select, "alpha_select", ALPHA_RULES),
        "score": check_choice(score, "score", SCORES),
        "seed": check_int(seed, "seed", minimum=0, hint="seed of the fold assignment"),
        "alphas": None,
    }
    if alphas is not None:
        values = np.asarray(alphas, dtype=np.float64).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values <= 0):
            raise InputError(
                f"alphas={alphas!r} must be a non-empty list of positive relative ridge strengths "
                "(alpha = r * ||A_c||_F²), e.g. [1e-4, 1e-2, 1]."
            )
        out["alphas"] = tuple(float(v) for v in values)
    return out


def _cache(
    x: torch.Tensor,
    folds: int = 5,
    alpha_select: str = "gcv",
    score: str = "r2",
    seed: int = 0,
    alphas: Sequence[float] | None = None,
) -> PredictivityCache:
    x = x.to(torch.float64)
    n = x.shape[0]
    xc = x - x.mean(dim=0, keepdim=True)
    scale = float((xc * xc).sum())
    if not scale > 1e-24 * max(float((x * x).sum()), 1e-300):
        raise InputError(
            "the features are constant across samples (zero variance), so no linear map can be fitted. "
            "Remove constant layers or check the inputs."
        )
    bases = []
    for train, test in fold_indices(n, folds, seed):
        tr = torch.as_tensor(train, device=x.device)
        te = torch.as_tensor(test, device=x.device)
        xt = x[tr]
        mean = xt.mean(dim=0, keepdim=True)
        u, s, vh = torch.linalg.svd(xt - mean, full_matrices=False)
        bases.append(FoldBasis(tr, te, u, s, (x[te] - mean) @ vh.T))
    return PredictivityCache(tuple(bases), scale, x)


def _permute(cache: PredictivityCache, perm: torch.Tensor, inv: torch.Tensor) -> PredictivityCache:
    """The target-role cache of ``Y[perm]`` (its predictor SVDs are not needed when it is only predicted)."""
    return PredictivityCache(None, cache.scale, cache.y[perm.to(cache.y.device)])


def _gcv_errors(u: torch.Tensor, s2: torch.Tensor, yc: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(A,) GCV criterion of every alpha for centred targets ``yc`` (n, D) on the basis (u, s²)."""
    n = yc.shape[0]
    b = u.T @ yc  # (r, D)
    bk = (b * b).sum(dim=1)  # (r,)
    g = s2[None, :] / (s2[None, :] + grid[:, None])  # (A, r)
    rss = (yc * yc).sum() - ((2.0 * g - g * g) * bk[None, :]).sum(dim=1)
    denom = (1.0 - (1.0 + g.sum(dim=1)) / n) ** 2
    err = (rss.clamp_min(0.0) / n) / denom
    return torch.where(denom > 1e-12, err, torch.full_like(err, float("inf")))


def _loo_errors(u: torch.Tensor, s2: torch.Tensor, yc: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """(A,) exact leave-one-out mean squared error of every alpha (unpenalised intercept), as RidgeCV."""
    n = yc.shape[0]
    b = u.T @ yc
    out = torch.empty(grid.shape[0], dtype=torch.float64, device=yc.device)
    for a, alpha in enumerate(grid):
        g = s2 / (s2 + alpha)
        resid = yc - (u * g) @ b
        h = 1.0 / n + (u * u) @ g
        out[a] = ((resid / (1.0 - h)[:, None]) ** 2).mean()
    return out


def _predict(x: PredictivityCache, y: torch.Tensor, grid: torch.Tensor, alpha_select: str) -> torch.Tensor:
    """(N, D) pooled held-out predictions of ``y`` from the predictor cache ``x``."""
    pred = torch.empty_like(y)
    errors = _gcv_errors if alpha_select == "gcv" else _loo_errors
    for fold in x.folds:
        yt = y[fold.train]
        ymean = yt.mean(dim=0, keepdim=True)
        yc = yt - ymean
        s2 = fold.s * fold.s
        alpha = grid[int(torch.argmin(errors(fold.u, s2, yc, grid)))]
        coef = fold.s / (s2 + alpha)
        pred[fold.test] = ymean + (fold.test_proj * coef) @ (fold.u.T @ yc)
    return pred


def _pair_score(x: PredictivityCache, y: torch.Tensor, alphas, alpha_select: str, score: str) -> float:
    grid = torch.as_tensor(alphas or DEFAULT_ALPHAS, dtype=torch.float64, device=y.device) * x.scale
    pred = _predict(x, y, grid, alpha_select)
    yc = y - y.mean(dim=0, keepdim=True)
    sst = (yc * yc).sum(dim=0)
    keep = sst > 1e-12 * float(sst.max())
    if not bool(keep.any()):
        raise InputError("the target features are constant across samples; nothing to predict.")
    if score == "r2":
        sse = ((y - pred) ** 2).sum(dim=0)
        return float((1.0 - sse[keep] / sst[keep]).mean())
    pc = pred - pred.mean(dim=0, keepdim=True)
    num = (pc * yc).sum(dim=0)
    den = torch.sqrt((pc * pc).sum(dim=0) * sst)
    r = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(num))
    return float(torch.quantile(r[keep], 0.5))  # the mean of the middle two for even counts


def _grid(
    xs: Sequence[PredictivityCache],
    ys: Sequence[PredictivityCache],
    folds: int = 5,
    alpha_select: str = "gcv",
    score: str = "r2",
    seed: int = 0,
    alphas: Sequence[float] | None = None,
) -> torch.Tensor:
    out = torch.empty((len(xs), len(ys)), dtype=torch.float64)
    for i, x in enumerate(xs):
        for j, y in enumerate(ys):
            out[i, j] = _pair_score(x, y.y.to(x.y.device), alphas, alpha_select, score)
    return out


def _grid_sym(xs: Sequence[PredictivityCache], ys: Sequence[PredictivityCache], **kw) -> torch.Tensor:
    return 0.5 * (_grid(xs, ys, **kw) + _grid(ys, xs, **kw).T)


def _cache_bytes(n: int, d: int, params: dict) -> float:
    r = min(n, d)
    return 8.0 * (params["folds"] * (n * r + r) + 2 * n * d)


def linear_predictivity(
    A: object,
    B: object,
    folds: int = 5,
    alpha_select: str = "gcv",
    score: str = "r2",
    seed: int = 0,
    alphas: Sequence[float] | None = None,
) -> float:
    """Cross-validated linear predictivity of B from A (ridge regression, held-out R²).

    Parameters
    ----------
    A, B : (N, D_a), (N, D_b) torch tensors or numpy arrays, same N; A predicts B.
    folds : K of the K-fold split of the items (seeded by ``seed``), >= 2.
    alpha_select : ``"gcv"`` (generalised cross-validation, default) or ``"loo"`` (exact leave-one-out, the rule
        of scikit-learn's ``RidgeCV``), applied on each fold's training items.
    score : ``"r2"`` (mean over B's columns of the pooled held-out R², default) or ``"pearson"`` (median over
        B's columns of the held-out Pearson r, Brain-Score's convention).
    alphas : relative ridge grid r (alpha = r * ||A_c||_F²); default 10⁻⁸ … 10² (21 values).

    Returns
    -------
    float in (-∞, 1]: 1 when B is an exact affine function of A (D_a below the training-fold size), at or below 0
    in expectation when A and B are independent. Not symmetric. Invariant to translations and isotropic scaling
    of either side and to rotations of A; not to rotations of B or general invertible maps of A.
    """
    return score_pair(
        LINEAR_PREDICTIVITY,
        A,
        B,
        folds=folds,
        alpha_select=alpha_select,
        score=score,
        seed=seed,
        alphas=alphas,
    )


def linear_predictivity_sym(
    A: object,
    B: object,
    folds: int = 5,
    alpha_select: str = "gcv",
    score: str = "r2",
    seed: int = 0,
    alphas: Sequence[float] | None = None,
) -> float:
    """Symmetric cross-validated linear predictivity: the mean of ``linear_predictivity(A, B)`` and ``(B, A)``.

    Same parameters and invariances as :func:`linear_predictivity`; symmetric in A and B.
    """
    return score_pair(
        LINEAR_PREDICTIVITY_SYM,
        A,
        B,
        folds=folds,
        alpha_select=alpha_select,
        score=score,
        seed=seed,
        alphas=alphas,
    )


_COMMON = {
    "layer_cache": _cache,
    "check_kwargs": _check_kwargs,
    "value_range": (-float("inf"), 1.0),
    "uses_k": False,
    "bounded": True,
    "cache_bytes": _cache_bytes,
    "defaults": {"folds": 5, "alpha_select": "gcv", "score": "r2"},
}

LINEAR_PREDICTIVITY = register(
    MetricSpec(
        name="linear_predictivity",
        display_name="linear predictivity",
        properties=MetricProperties(
            definition="mean over B's columns of the held-out R² of ridge regression A → B (intercept), K-fold cross-validated over items, ridge strength by GCV on each training fold",
            value_range="(-∞, 1]",
            symmetric=False,
            identity=True,
            orthogonal=NO,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            permutation=NO,
            null="≤ 0 (no closed form)",
            cost="O(K N_tr D r) per layer (one SVD per fold, r = min(N_tr, D)), O(K N r D_B) per pair",
            prefer="a predictive (encoding-model) score: can A linearly explain B on new items? rotations of A leave it unchanged, of B do not; folds are drawn over positions, so permuting items changes it by fold noise",
        ),
        func=linear_predictivity,
        grid=_grid,
        symmetric=False,
        permute_cache=_permute,
        description="K-fold cross-validated ridge regression A -> B (GCV ridge strength): mean held-out R² over B's columns",
        **_COMMON,
    )
)

LINEAR_PREDICTIVITY_SYM = register(
    MetricSpec(
        name="linear_predictivity_sym",
        display_name="linear predictivity (both directions)",
        properties=MetricProperties(
            definition="(linear_predictivity(A, B) + linear_predictivity(B, A)) / 2",
            value_range="(-∞, 1]",
            symmetric=True,
            identity=True,
            orthogonal=NO,
            isotropic_scaling=YES,
            invertible_linear=NO,
            translation=YES,
            permutation=NO,
            null="≤ 0 (no closed form)",
            cost="twice linear_predictivity",
            prefer="a symmetric predictive score for tables and heatmaps",
        ),
        func=linear_predictivity_sym,
        grid=_grid_sym,
        symmetric=True,
        description="mean of linear_predictivity(A, B) and linear_predictivity(B, A)",
        **_COMMON,
    )
)
