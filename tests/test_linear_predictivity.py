"""linear_predictivity against scikit-learn (RidgeCV + cross_val_predict), a literal GCV loop, and its controls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats as sps
from sklearn.linear_model import Ridge, RidgeCV
from sklearn.metrics import r2_score
from sklearn.model_selection import cross_val_predict

import prh
import prh.metrics as M
from prh.errors import InputError
from prh.metrics._linear_predictivity import DEFAULT_ALPHAS, fold_indices


def related(seed: int, n: int, da: int, db: int, noise: float = 0.7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3))
    a = z @ rng.standard_normal((3, da)) + noise * rng.standard_normal((n, da)) + rng.standard_normal(da)
    b = z @ rng.standard_normal((3, db)) + noise * rng.standard_normal((n, db)) + rng.standard_normal(db)
    return a, b


def alphas_for(a: np.ndarray) -> np.ndarray:
    return np.asarray(DEFAULT_ALPHAS) * ((a - a.mean(0)) ** 2).sum()


@pytest.mark.parametrize(("n", "da", "db"), [(60, 8, 5), (40, 50, 7), (80, 12, 30)])
def test_equals_sklearn_ridgecv_cross_val_predict(n, da, db):
    a, b = related(n + da, n, da, db)
    cv = fold_indices(n, 5, 0)
    pred = cross_val_predict(RidgeCV(alphas=alphas_for(a)), a, b, cv=cv)
    assert M.linear_predictivity(a, b, alpha_select="loo") == pytest.approx(r2_score(b, pred), abs=1e-8)
    pearson = np.median([sps.pearsonr(pred[:, d], b[:, d])[0] for d in range(db)])
    got = M.linear_predictivity(a, b, alpha_select="loo", score="pearson")
    assert got == pytest.approx(pearson, abs=1e-8)


def _gcv_literal(a: np.ndarray, b: np.ndarray, alphas: np.ndarray) -> float:
    """The GCV-chosen ridge per fold by explicit hat matrices, predictions by sklearn's Ridge."""
    pred = np.empty_like(b)
    for train, test in fold_indices(a.shape[0], 5, 0):
        x, y = a[train], b[train]
        n = len(train)
        x1 = np.hstack([np.ones((n, 1)), x])
        scores = []
        for alpha in alphas:
            pen = alpha * np.eye(x1.shape[1])
            pen[0, 0] = 0.0  # intercept not penalised
            hat = x1 @ np.linalg.solve(x1.T @ x1 + pen, x1.T)
            resid = y - hat @ y
            scores.append((resid**2).sum() / n / (1.0 - np.trace(hat) / n) ** 2)
        best = alphas[int(np.argmin(scores))]
        pred[test] = Ridge(alpha=best).fit(x, y).predict(a[test])
    return r2_score(b, pred)


def test_gcv_equals_literal_loop():
    a, b = related(3, 50, 6, 4)
    assert M.linear_predictivity(a, b) == pytest.approx(_gcv_literal(a, b, alphas_for(a)), abs=1e-8)


def test_identity_affine_and_scale():
    a, b = related(1, 60, 8, 5)
    m = np.random.default_rng(2).standard_normal((8, 8))
    assert M.linear_predictivity(a, a @ m + 3.0) == pytest.approx(1.0, abs=1e-6)
    base = M.linear_predictivity(a, b)
    assert M.linear_predictivity(5.0 * a + 1.0, 0.1 * b - 2.0) == pytest.approx(base, abs=1e-9)
    assert M.linear_predictivity_sym(a, b) == pytest.approx(
        0.5 * (M.linear_predictivity(a, b) + M.linear_predictivity(b, a)), abs=1e-12
    )


def test_shuffled_pairing_sits_at_chance():
    """The control: B's rows shuffled against A's; held-out R² at or just below 0, far below the paired score."""
    a, b = related(4, 200, 10, 8)
    paired = M.linear_predictivity(a, b)
    rng = np.random.default_rng(0)
    shuffled = [M.linear_predictivity(a, b[rng.permutation(200)]) for _ in range(10)]
    assert paired > 0.5
    assert -0.1 < float(np.mean(shuffled)) <= 0.01
    assert max(shuffled) < 0.05


def test_permutation_redraws_folds():
    """The folds are drawn over positions: the same permutation of both sides changes the score a little."""
    a, b = related(5, 60, 10, 10)
    perm = np.random.default_rng(1).permutation(60)
    base = M.linear_predictivity(a, b)
    moved = M.linear_predictivity(a[perm], b[perm])
    assert moved != pytest.approx(base, abs=1e-9)
    assert moved == pytest.approx(base, abs=0.1)


def test_permute_cache_matches_recomputed_cache():
    a, b = related(6, 40, 6, 5)
    spec = M.spec("linear_predictivity")
    kw = spec.check_kwargs(40)
    perm = torch.randperm(40, generator=torch.Generator().manual_seed(0))
    inv = torch.argsort(perm)
    ca, cb = spec.layer_cache(torch.as_tensor(a), **kw), spec.layer_cache(torch.as_tensor(b), **kw)
    fast = spec.grid([ca], [spec.permute_cache(cb, perm, inv)], **kw)
    slow = spec.grid([ca], [spec.layer_cache(torch.as_tensor(b)[perm], **kw)], **kw)
    assert float(fast[0, 0]) == pytest.approx(float(slow[0, 0]), abs=1e-12)


def test_sweep_grid_equals_pairwise():
    rng = np.random.default_rng(7)
    x = rng.standard_normal((30, 3, 6))
    y = x[:, ::-1, :5] + 0.3 * rng.standard_normal((30, 3, 5))
    sw = prh.sweep(x, y, metric="linear_predictivity")
    for i in range(3):
        for j in range(3):
            assert sw.scores[i, j] == pytest.approx(M.linear_predictivity(x[:, i], y[:, j]), abs=1e-12)


def test_bad_options_raise():
    a, b = related(8, 12, 3, 3)
    with pytest.raises(InputError, match="folds"):
        M.linear_predictivity(a, b, folds=10)
    with pytest.raises(InputError, match="alpha_select"):
        M.linear_predictivity(a, b, alpha_select="bic")
    with pytest.raises(InputError, match="alphas"):
        M.linear_predictivity(a, b, alphas=[0.0, 1.0])
    with pytest.raises(InputError, match="constant"):
        M.linear_predictivity(np.ones((12, 3)), b)
