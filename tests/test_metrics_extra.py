"""Closed forms, invariances and sweep consistency of the extra metrics."""

from __future__ import annotations

import json
from itertools import combinations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import pearsonr, spearmanr
from typer.testing import CliRunner

import prh
import prh.metrics as M
from conftest import REFERENCE_EIGHT
from prh.errors import InputError
from prh.metrics.knn import KnnCache
from prh.metrics.knn_sets import _jaccard_grid, jaccard_null
from reference_impl import hsic_unbiased

EXTRA = [
    "debiased_cka",
    "jaccard_knn",
    "cycle_knn_ba",
    "cycle_knn_both",
    "procrustes",
    "pwcca",
    "rsa",
    "rv",
]


def related(n=40, da=12, db=10, seed=0, noise=0.5):
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 3)) * np.array([3.0, 2.0, 1.0])
    a = z @ rng.standard_normal((3, da)) + noise * rng.standard_normal((n, da))
    b = z @ rng.standard_normal((3, db)) + noise * rng.standard_normal((n, db))
    return a, b


def rotation(d, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return q


# --- registry ----------------------------------------------------------------------------------------------


def test_names_list_reference_eight_first_then_extras():
    assert M.names()[:8] == REFERENCE_EIGHT
    assert set(EXTRA) <= set(M.names()[8:])


@pytest.mark.parametrize("name", EXTRA)
def test_specs_are_consistent(name):
    s = M.spec(name)
    a, b = related()
    value = M.get(name)(a, b)
    assert isinstance(value, float)
    lo, hi = s.value_range
    assert lo <= value <= hi
    # the defaults are what check_kwargs fills in; path="auto" is resolved to the path it takes at this N
    resolved = {**s.defaults, **({"path": "gram"} if s.defaults.get("path") == "auto" else {})}
    assert s.check_kwargs(40) == resolved


# --- procrustes ------------------------------------------------------------------------------------------------


def procrustes_numpy(a, b):
    x = a - a.mean(0)
    y = b - b.mean(0)
    x, y = x / np.linalg.norm(x), y / np.linalg.norm(y)
    width = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, width - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, width - y.shape[1])))
    nuc = np.linalg.svd(x.T @ y, compute_uv=False).sum()
    return 1 - np.arccos(min(nuc, 1.0)) * 2 / np.pi


@pytest.mark.parametrize(("n", "da", "db"), [(40, 12, 10), (20, 30, 25), (30, 5, 31)])
def test_procrustes_matches_padded_closed_form(n, da, db):
    a, b = related(n, da, db)
    assert M.procrustes(a, b) == pytest.approx(procrustes_numpy(a, b), abs=1e-10)


def test_procrustes_is_one_under_rotation_scaling_translation_and_below_one_under_linear_map():
    a, _ = related(da=12)
    moved = 3.0 * a @ rotation(12, 1) + 5.0
    assert M.procrustes(a, moved) == pytest.approx(1.0, abs=1e-7)
    stretch = a @ np.diag(np.linspace(0.2, 5.0, 12))
    assert M.procrustes(a, stretch) < 0.95
    # orthogonal columns: nuclear norm 0 -> angle pi/2 -> similarity 0
    x = np.zeros((4, 2))
    x[:, 0] = [1, -1, 1, -1]
    y = np.zeros((4, 1))
    y[:, 0] = [1, 1, -1, -1]
    assert M.procrustes(x[:, :1], y) == pytest.approx(0.0, abs=1e-12)


# --- RV ------------------------------------------------------------------------------------------------------------


def test_rv_centred_equals_linear_biased_cka_always():
    for seed in range(3):
        a, b = related(seed=seed)
        a, b = a + 4.0, b - 2.0  # far from centred: the identity still holds
        assert M.rv(a, b) == pytest.approx(M.cka(a, b), abs=1e-10)


def test_rv_uncentred_equals_cka_iff_inputs_are_centred():
    a, b = related()
    a, b = a + 2.0, b + 1.0
    ac, bc = a - a.mean(0), b - b.mean(0)
    assert M.rv(ac, bc, center=False) == pytest.approx(M.cka(a, b), abs=1e-10)
    assert abs(M.rv(a, b, center=False) - M.cka(a, b)) > 1e-2
    # Escoufier's closed form on the raw configurations
    num = np.linalg.norm(a.T @ b) ** 2
    den = np.linalg.norm(a.T @ a) * np.linalg.norm(b.T @ b)
    assert M.rv(a, b, center=False) == pytest.approx(num / den, abs=1e-10)


# --- RSA ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("rdm", ["correlation", "euclidean"])
@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_rsa_matches_scipy(rdm, compare):
    a, b = related(n=30)
    da, db = pdist(a, metric=rdm), pdist(b, metric=rdm)
    expected = (spearmanr if compare == "spearman" else pearsonr)(da, db)[0]
    assert M.rsa(a, b, rdm=rdm, compare=compare) == pytest.approx(expected, abs=1e-9)


def test_rsa_spearman_is_one_for_a_monotone_transform_of_the_distances():
    a, _ = related(n=30)
    d2 = ((a[:, None, :] - a[None, :, :]) ** 2).sum(-1)
    kernel = np.exp(-d2 / (2 * np.median(d2)))  # PSD; its feature map has d_B^2 = 2 - 2 exp(-d_A^2 / ...)
    w, v = np.linalg.eigh(kernel)
    b = v * np.sqrt(np.clip(w, 0, None))
    assert M.rsa(a, b, rdm="euclidean", compare="spearman") == pytest.approx(1.0, abs=1e-9)
    assert M.rsa(a, b, rdm="euclidean", compare="pearson") < 0.999


def test_rsa_ties_use_average_ranks():
    from prh.metrics._rsa import average_ranks

    v = torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0], dtype=torch.float64)
    assert average_ranks(v).tolist() == [4.5, 1.5, 4.5, 3.0, 1.5]


def test_rsa_bad_options_and_constant_rows():
    a, b = related()
    with pytest.raises(InputError, match="rdm"):
        M.rsa(a, b, rdm="cosine")
    a[3] = 1.0
    with pytest.raises(InputError, match="correlation"):
        M.rsa(a, b)


# --- Jaccard / cycle kNN -----------------------------------------------------------------------------------------


def test_jaccard_hand_example():
    # sample 0: {1, 2} vs {1, 3} -> 1/3; sample 1: {0, 2} vs {0, 2} -> 1; sample 2: {0, 1} vs {3, 4} -> 0;
    # samples 3, 4: {0, 1} vs {0, 1} -> 1
    ka = torch.tensor([[1, 2], [0, 2], [0, 1], [0, 1], [0, 1]])
    kb = torch.tensor([[3, 1], [2, 0], [3, 4], [1, 0], [0, 1]])
    got = float(_jaccard_grid([KnnCache(ka)], [KnnCache(kb)], k=2)[0, 0])
    assert got == pytest.approx((1 / 3 + 1 + 0 + 1 + 1) / 5)


def test_jaccard_brute_force_and_k1_equals_mutual():
    a, b = related(n=30)
    k = 4
    na = np.argsort(-(a @ a.T) + np.diag(np.full(30, np.inf)), axis=1)[:, :k]
    nb = np.argsort(-(b @ b.T) + np.diag(np.full(30, np.inf)), axis=1)[:, :k]
    expected = np.mean([len(set(x) & set(y)) / len(set(x) | set(y)) for x, y in zip(na, nb)])
    assert M.jaccard_knn(a, b, k=k) == pytest.approx(expected)
    assert M.jaccard_knn(a, b, k=1) == pytest.approx(M.mutual_knn(a, b, k=1))


def test_jaccard_null_is_exact():
    n, k = 6, 2
    others = range(n - 1)
    subsets = list(combinations(others, k))
    brute = np.mean([len(set(s) & set(t)) / len(set(s) | set(t)) for s in subsets for t in subsets])
    assert jaccard_null(n, k) == pytest.approx(brute)
    assert M.spec("jaccard_knn").null_expectation(n, {"k": k}) == pytest.approx(brute)


def test_jaccard_of_independent_inputs_is_near_null():
    rng = np.random.default_rng(3)
    vals = [M.jaccard_knn(rng.standard_normal((200, 16)), rng.standard_normal((200, 16))) for _ in range(5)]
    assert np.mean(vals) == pytest.approx(jaccard_null(200, 10), abs=0.01)


def test_cycle_knn_directions():
    a, b = related(n=40)
    ab, ba = M.cycle_knn_directions(a, b, k=5)
    assert ab == M.cycle_knn(a, b, k=5)
    assert ba == M.cycle_knn(b, a, k=5) == M.cycle_knn_ba(a, b, k=5)
    assert M.cycle_knn_both(a, b, k=5) == pytest.approx((ab + ba) / 2)
    assert M.cycle_knn_both(a, b, k=5) == pytest.approx(M.cycle_knn_both(b, a, k=5))


# --- PWCCA ----------------------------------------------------------------------------------------------------


def pwcca_numpy(a, b):
    """Independent implementation: CCA by whitening covariances, then Morcos et al.'s weights on A."""
    x, y = a - a.mean(0), b - b.mean(0)
    sxx, syy, sxy = x.T @ x, y.T @ y, x.T @ y

    def inv_sqrt(s):
        w, v = np.linalg.eigh(s)
        return v @ np.diag(w**-0.5) @ v.T

    u, rho, _ = np.linalg.svd(inv_sqrt(sxx) @ sxy @ inv_sqrt(syy), full_matrices=False)
    h = x @ inv_sqrt(sxx) @ u  # canonical variates of A (orthonormal columns)
    alpha = np.abs(h.T @ x).sum(axis=1)
    return float((alpha * rho).sum() / alpha.sum())


def test_pwcca_matches_whitening_implementation():
    for seed in range(3):
        a, b = related(n=60, da=8, db=6, seed=seed)
        assert M.pwcca(a, b) == pytest.approx(pwcca_numpy(a, b), abs=1e-9)
        assert M.pwcca(b, a) == pytest.approx(pwcca_numpy(b, a), abs=1e-9)


def test_pwcca_identity_and_invariances():
    a, b = related(n=60, da=8, db=6)
    assert M.pwcca(a, a) == pytest.approx(1.0, abs=1e-9)
    m = np.random.default_rng(5).standard_normal((8, 8)) + 3 * np.eye(8)
    assert M.pwcca(a, a @ m + 1.0) == pytest.approx(1.0, abs=1e-9)  # B = invertible map of A
    mb = np.random.default_rng(6).standard_normal((6, 6)) + 3 * np.eye(6)
    assert M.pwcca(a, b @ mb) == pytest.approx(M.pwcca(a, b), abs=1e-9)  # any invertible map of B
    assert M.pwcca(a * 7.0, b) == pytest.approx(M.pwcca(a, b), abs=1e-9)
    assert abs(M.pwcca(a @ rotation(8, 2), b) - M.pwcca(a, b)) > 1e-5  # weights live in A's neuron basis


# --- debiased CKA ------------------------------------------------------------------------------------------------


def debiased_self_brute(x):
    """Chun et al.'s self term from its definition: D/(D-1) * sum over distinct feature pairs a != b."""
    x = torch.as_tensor(x, dtype=torch.float64)
    d = x.shape[1]
    grams = [x[:, i : i + 1] @ x[:, i : i + 1].T for i in range(d)]
    total = sum(float(hsic_unbiased(grams[i], grams[j])) for i in range(d) for j in range(d) if i != j)
    return d / (d - 1) * total


def test_debiased_cka_matches_distinct_pair_definition():
    a, b = related(n=20, da=5, db=4)
    cross = float(hsic_unbiased(torch.as_tensor(a @ a.T), torch.as_tensor(b @ b.T)))
    expected = cross / np.sqrt(debiased_self_brute(a) * debiased_self_brute(b))
    assert M.debiased_cka(a, b) == pytest.approx(expected, rel=1e-9)


def test_debiased_cka_shared_columns_identity_and_definition():
    a, b = related(n=20, da=5, db=5)
    assert M.debiased_cka(a, a, columns="shared") == pytest.approx(1.0, abs=1e-12)
    ta, tb = torch.as_tensor(a), torch.as_tensor(b)
    ga = [ta[:, i : i + 1] @ ta[:, i : i + 1].T for i in range(5)]
    gb = [tb[:, i : i + 1] @ tb[:, i : i + 1].T for i in range(5)]
    cross = 5 / 4 * sum(float(hsic_unbiased(ga[i], gb[j])) for i in range(5) for j in range(5) if i != j)
    expected = cross / np.sqrt(debiased_self_brute(a) * debiased_self_brute(b))
    assert M.debiased_cka(a, b, columns="shared") == pytest.approx(expected, rel=1e-9)
    with pytest.raises(InputError, match="same number"):
        M.debiased_cka(a, b[:, :4], columns="shared")


def test_debiased_cka_is_near_zero_for_independent_inputs():
    rng = np.random.default_rng(0)
    vals = []
    for _ in range(10):
        a = rng.standard_normal((100, 3)) @ rng.standard_normal((3, 20)) + 0.1 * rng.standard_normal(
            (100, 20)
        )
        b = rng.standard_normal((100, 3)) @ rng.standard_normal((3, 20)) + 0.1 * rng.standard_normal(
            (100, 20)
        )
        vals.append(M.debiased_cka(a, b))
    assert abs(np.mean(vals)) < 0.03


def test_debiased_cka_removes_the_feature_sampling_bias_of_unbiased_cka():
    # Two independent neuron samples of the same population (population CKA = 1): with few neurons unbiased
    # CKA is biased down; the feature-debiased estimate is closer to 1.
    rng = np.random.default_rng(1)
    z = rng.standard_normal((200, 4)) * np.array([3.0, 2.0, 1.0, 0.5])
    deb, unb = [], []
    for _ in range(8):
        a = z @ rng.standard_normal((4, 40)) + 0.5 * rng.standard_normal((200, 40))
        b = z @ rng.standard_normal((4, 40)) + 0.5 * rng.standard_normal((200, 40))
        deb.append(M.debiased_cka(a, b))
        unb.append(M.unbiased_cka(a, b))
    assert abs(np.mean(deb) - 1.0) < abs(np.mean(unb) - 1.0)


def test_debiased_cka_rejects_isotropic_noise_with_a_clear_message():
    # iid isotropic features have a population kernel proportional to the identity: HSIC_d(X, X) ~ 0
    rng = np.random.default_rng(2)
    with pytest.raises(InputError, match="self term"):
        for _ in range(10):
            M.debiased_cka(rng.standard_normal((30, 4)), rng.standard_normal((30, 4)))


def test_debiased_cka_needs_two_features():
    with pytest.raises(InputError, match="D=2"):
        M.debiased_cka(np.random.default_rng(0).standard_normal((10, 1)), np.ones((10, 3)))


# --- sweep and CLI ---------------------------------------------------------------------------------------


SWEEP_CASES = [(name, {}) for name in EXTRA] + [
    ("rsa", {"rdm": "euclidean", "compare": "pearson"}),
    ("rv", {"center": False}),
    ("jaccard_knn", {"k": 3}),
    ("cycle_knn_ba", {"k": 4}),
]


@pytest.mark.parametrize(("name", "kw"), SWEEP_CASES)
def test_sweep_grid_equals_per_pair_calls(name, kw):
    rng = np.random.default_rng(0)
    z = rng.standard_normal((36, 3))
    xs = [z @ rng.standard_normal((3, d)) + 0.5 * rng.standard_normal((36, d)) for d in (6, 8, 8)]
    ys = [z @ rng.standard_normal((3, d)) + 0.5 * rng.standard_normal((36, d)) for d in (8, 5)]
    if name == "debiased_cka":
        kw = {}
    result = prh.sweep(xs, ys, metric=name, **kw)
    expected = np.array([[M.get(name)(x, y, **kw) for y in ys] for x in xs])
    np.testing.assert_allclose(result.scores, expected, atol=1e-10)


def test_sweep_of_shared_debiased_cka_over_equal_widths():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((30, 3))
    xs = np.stack([z @ rng.standard_normal((3, 6)) + 0.3 * rng.standard_normal((30, 6)) for _ in range(3)], 1)
    ys = np.stack([z @ rng.standard_normal((3, 6)) + 0.3 * rng.standard_normal((30, 6)) for _ in range(2)], 1)
    result = prh.sweep(xs, ys, metric="debiased_cka", columns="shared")
    expected = [[M.debiased_cka(xs[:, i], ys[:, j], columns="shared") for j in range(2)] for i in range(3)]
    np.testing.assert_allclose(result.scores, expected, atol=1e-10)


@pytest.mark.parametrize("name", EXTRA)
def test_cli_scores_every_extra_metric(tmp_path, name):
    from prh.cli import app

    a, b = related(n=40, da=6, db=5)
    np.save(tmp_path / "a.npy", a)
    np.save(tmp_path / "b.npy", b)
    out = CliRunner().invoke(
        app, ["score", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "--metric", name, "--json"]
    )
    assert out.exit_code == 0, out.output
    assert json.loads(out.stdout)["score"] == pytest.approx(M.get(name)(a, b), abs=1e-6)


def test_cycle_knn_ba_of_identical_inputs_is_the_reciprocal_neighbour_rate():
    """The docstring's numbers: not 1 for identical inputs in general (k=1: reciprocal nearest neighbours)."""
    a = torch.nn.functional.normalize(torch.randn(64, 32, generator=torch.Generator().manual_seed(0)), dim=1)
    nearest = (a @ a.T).fill_diagonal_(-2.0).argmax(dim=1)
    reciprocal = float((nearest[nearest] == torch.arange(64)).double().mean())
    assert M.cycle_knn_ba(a, a, k=1) == pytest.approx(reciprocal) == pytest.approx(0.53125)
    assert M.cycle_knn_ba(a, a, k=10) == 1.0
