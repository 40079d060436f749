"""prh.stats calibration: τ / p / calibrated formulas by hand, permuted caches equal permuted data, errors."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

import prh
from prh._sweep import cache_layers, sweep_caches
from prh.errors import InputError
from prh.metrics import registry
from prh.metrics.null import inverse_permutation
from prh.stats import (
    calibrate,
    calibrate_sweep,
    calibrated_score,
    min_permutations,
    null_grid,
    permutation_p_value,
    permutation_threshold,
)
from prh.stats._calibrate import threshold_rank
from prh.stats.permute import random_permutations

ALL_EIGHT = {
    "mutual_knn": {"k": 5},
    "cycle_knn": {"k": 5},
    "lcs_knn": {"k": 4},
    "edit_distance_knn": {"k": 4},
    "cka": {},
    "unbiased_cka": {},
    "cknna": {"k": 5},
    "svcca": {"dim": 4},
}


pytestmark = pytest.mark.usefixtures("one_thread")

# the metric modules (``prh.metrics.cka`` etc. as attributes are the metric functions, hence import_module)
knn_module = importlib.import_module("prh.metrics.knn")
cka_module = importlib.import_module("prh.metrics._cka")
cknna_module = importlib.import_module("prh.metrics._cknna")


def _related(n=40, lx=3, ly=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 6, generator=g, dtype=torch.float64)
    x = [
        base @ torch.randn(6, 12, generator=g, dtype=torch.float64)
        + torch.randn(n, 12, generator=g, dtype=torch.float64)
        for _ in range(lx)
    ]
    y = [
        base @ torch.randn(6, 9, generator=g, dtype=torch.float64)
        + torch.randn(n, 9, generator=g, dtype=torch.float64)
        for _ in range(ly)
    ]
    return prh.prepare(x), prh.prepare(y)


# ----------------------------------------------------------------------------------------------- formulas


def test_threshold_and_p_value_by_hand():
    null = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])  # K = 9
    # alpha = 0.2: m = ceil(0.8 * 10) = 8 -> the 8th smallest of the 10 values
    assert threshold_rank(9, 0.2) == 8
    assert permutation_threshold(0.55, null, 0.2) == pytest.approx(0.7)  # .1 .2 .3 .4 .5 .55 .6 [.7] .8 .9
    assert permutation_p_value(0.55, null) == pytest.approx((1 + 4) / 10)
    assert calibrated_score(0.55, 0.7, bounded=True) == 0.0
    assert permutation_threshold(0.95, null, 0.2) == pytest.approx(0.8)  # ... .7 [.8] .9 .95
    assert permutation_p_value(0.95, null) == pytest.approx(0.1)
    assert calibrated_score(0.95, 0.8, bounded=True) == pytest.approx(0.75)
    assert calibrated_score(0.95, 0.8, bounded=False) == pytest.approx(0.15)
    assert calibrated_score(-0.2, 0.8, bounded=False) == 0.0
    assert calibrated_score(0.9, 1.0, bounded=True) == 0.0
    # ties count as >=
    assert permutation_p_value(0.5, null) == pytest.approx((1 + 5) / 10)


def test_threshold_rank_is_exact_arithmetic():
    # (1 - 0.05) * 1000 = 949.9999... in floats; the exact rank is 950
    assert threshold_rank(999, 0.05) == 950
    assert threshold_rank(19, 0.05) == 19
    assert threshold_rank(99, 0.01) == 99
    assert min_permutations(0.05) == 19
    assert min_permutations(0.01) == 99
    assert min_permutations(0.3) == 3  # 1/(K+1) <= 0.3 <=> K >= 2.33


def test_calibrate_result_matches_formulas():
    x, y = _related(n=40, lx=1, ly=1)
    r = calibrate(x[0], y[0], "mutual_knn", K=199, alpha=0.05, seed=3, k=5)
    assert r.null.shape == (199,)
    assert r.score == pytest.approx(prh.metrics.mutual_knn(x[0], y[0], k=5))
    values = np.sort(np.concatenate([[r.score], r.null]))
    assert r.tau == values[int(np.ceil(0.95 * 200)) - 1]
    assert r.p_value == (1 + np.sum(r.null >= r.score)) / 200
    assert r.calibrated == pytest.approx(max(0.0, (r.score - r.tau) / (1 - r.tau)))
    assert r.significant == (r.p_value <= 0.05) == (r.calibrated > 0)
    d = r.to_dict()
    assert {"score", "tau", "p_value", "calibrated_score", "K", "alpha"} <= set(d)
    assert d["params"] == {"k": 5}


# ------------------------------------------------------------------------------- nulls equal permuted data


def _options(metric: str) -> dict:
    """Small valid options of any registered metric for N=36 samples of the _related data."""
    if metric in ALL_EIGHT:
        return ALL_EIGHT[metric]
    return {"k": 5} if registry.spec(metric).uses_k else {}


def _engines(metric: str) -> list[str]:
    """Every null engine the spec offers: its own fast one, the re-indexing one, and recomputation."""
    spec = registry.spec(metric)
    return (
        (["fast"] if spec.null_engine else []) + (["permuted"] if spec.permute_cache else []) + ["recompute"]
    )


@pytest.mark.parametrize("metric", prh.metrics.names())
def test_every_null_engine_equals_a_naive_recompute(metric):
    """For every registered metric, every engine's null grids equal prh.sweep on Y[perm] for the same perms."""
    x, y = _related(n=36)
    kw = _options(metric)
    perms = random_permutations(36, 6, torch.Generator().manual_seed(5))
    direct = np.stack([prh.sweep(x, [layer[p] for layer in y], metric, **kw).scores for p in perms])
    # the null is not degenerate: different permutations give different grids
    assert np.unique(direct[:, 0, 0].round(12)).size > 1
    observed = prh.sweep(x, y, metric, **kw).scores
    for engine in ["auto", *_engines(metric)]:
        res = calibrate_sweep(
            x, y, metric, K=6, alpha=0.25, seed=5, keep_null_grids=True, engine=engine, **kw
        )
        np.testing.assert_allclose(res.null_grids, direct, rtol=0, atol=1e-12, err_msg=engine)
        np.testing.assert_allclose(res.sweep.scores, observed, rtol=0, atol=1e-12, err_msg=engine)
        np.testing.assert_allclose(res.null, direct.max(axis=(1, 2)), atol=1e-12, err_msg=engine)


@pytest.mark.parametrize(
    ("metric", "kw", "shape", "patch"),
    [
        ("unbiased_cka", {}, (2, 3), None),  # fewer X layers: X's kernels are the gathered side
        ("unbiased_cka", {}, (2, 3), (cka_module, "STACK_BYTES", 0)),
        ("cka", {"kernel": "rbf", "sigma": 0.7}, (3, 2), None),  # biased, non-linear kernel
        ("cka", {}, (2, 2), None),
        ("cknna", {"k": 5, "unbiased": False}, (3, 2), None),  # biased: self in the lists, both cross terms
        ("cknna", {"k": 5, "distance_agnostic": True}, (3, 2), None),
        ("cknna", {"k": 6}, (2, 3), (cknna_module, "WORD_LAYERS", 1)),  # one bit table per Y layer
        ("cknna", {"k": 6, "unbiased": False}, (2, 3), (cknna_module, "WORD_LAYERS", 2)),
    ],
)
def test_fast_engine_variants_equal_a_naive_recompute(monkeypatch, metric, kw, shape, patch):
    """The batched engines' other branches (side swap, biased, RBF, mask-only, several bit tables) are exact too."""
    if patch is not None:
        monkeypatch.setattr(*patch)
    x, y = _related(n=36, lx=shape[0], ly=shape[1], seed=3)
    if kw.get("kernel") == "rbf":  # float32 cdist is not exactly permutation-equivariant (its mm path)
        x, y = [layer.double() for layer in x], [layer.double() for layer in y]
    perms = random_permutations(36, 5, torch.Generator().manual_seed(2))
    direct = np.stack([prh.sweep(x, [layer[p] for layer in y], metric, **kw).scores for p in perms])
    assert np.unique(direct[:, 0, 0].round(12)).size > 1
    res = calibrate_sweep(x, y, metric, K=5, alpha=0.25, seed=2, keep_null_grids=True, engine="fast", **kw)
    np.testing.assert_allclose(res.null_grids, direct, rtol=0, atol=1e-12)
    np.testing.assert_allclose(res.sweep.scores, prh.sweep(x, y, metric, **kw).scores, rtol=0, atol=1e-12)


def test_kernel_engine_observed_grid_with_a_float32_rbf_kernel():
    """An RBF kernel of float32 features is symmetric only to float32 rounding; the engine's identity grid (the
    observed scores of calibrate_sweep) still equals the sweep to 1e-12, not to the kernel's asymmetry."""
    x, y = _related(n=36, lx=2, ly=3, seed=4)
    for kw in ({"kernel": "rbf", "sigma": 0.6}, {"kernel": "rbf", "sigma": 0.6, "unbiased": True}):
        res = calibrate_sweep(x, y, "cka", K=4, alpha=0.25, seed=0, **kw)
        np.testing.assert_allclose(res.sweep.scores, prh.sweep(x, y, "cka", **kw).scores, rtol=0, atol=1e-12)


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "cka", "unbiased_cka", "cknna"])
def test_the_paper_metrics_have_fast_engines(metric):
    """The metrics calibrated in the demo keep their batched engines (not the generic fallbacks)."""
    x, y = _related(n=30)
    cx, cy = cache_layers(x, metric, **ALL_EIGHT[metric]), cache_layers(y, metric, **ALL_EIGHT[metric])
    spec = registry.spec(metric)
    engine = null_grid.make_engine(spec, cx.caches, cy.caches, cx.params)
    assert not isinstance(engine, (null_grid.PermutedCacheEngine, null_grid.RecomputeEngine))


def test_unavailable_engine_is_a_clear_error():
    x, y = _related(n=30)
    with pytest.raises(InputError, match="no fast null engine"):
        calibrate_sweep(x, y, "rsa", K=8, alpha=0.2, engine="fast")
    with pytest.raises(InputError, match="no re-indexing rule"):
        calibrate_sweep(x, y, "rsa", K=8, alpha=0.2, engine="permuted")
    with pytest.raises(InputError, match="engine='fastest'"):
        calibrate_sweep(x, y, "rsa", K=8, alpha=0.2, engine="fastest")


def test_observed_sweep_is_reused_and_checked():
    x, y = _related(n=30)
    cx, cy = cache_layers(x, "mutual_knn", k=5), cache_layers(y, "mutual_knn", k=5)
    observed = sweep_caches(cx, cy)
    ref = calibrate_sweep(cx, cy, "mutual_knn", K=20, seed=1)
    ours = calibrate_sweep(cx, cy, "mutual_knn", K=20, seed=1, observed=observed)
    assert ours.score == ref.score and ours.p_value == ref.p_value
    np.testing.assert_array_equal(ours.null, ref.null)
    with pytest.raises(InputError, match="observed"):
        calibrate_sweep(cx, cy, "mutual_knn", K=20, observed=sweep_caches(cx, cx))


def test_inverse_permutation():
    perms = random_permutations(10, 3, torch.Generator().manual_seed(0))
    inv = inverse_permutation(perms)
    for p, q in zip(perms, inv):
        assert torch.equal(p[q], torch.arange(10))


def test_same_permutation_for_every_layer():
    x, y = _related(n=40, lx=2, ly=1)
    twin = [y[0], y[0].clone()]
    for metric in ("mutual_knn", "unbiased_cka", "cknna"):
        r = calibrate_sweep(x, twin, metric, K=20, seed=2, keep_null_grids=True, **ALL_EIGHT[metric])
        np.testing.assert_array_equal(r.null_grids[:, :, 0], r.null_grids[:, :, 1])
        # and the null is not degenerate: different permutations give different grids
        assert np.unique(r.null_grids[:, 0, 0]).size > 1


def test_deterministic_for_a_seed_and_independent_of_batch(monkeypatch):
    x, y = _related(n=40)
    a = calibrate_sweep(x, y, "mutual_knn", K=50, seed=7, k=5, keep_null_grids=True)
    b = calibrate_sweep(x, y, "mutual_knn", K=50, seed=7, k=5, keep_null_grids=True)
    c = calibrate_sweep(x, y, "mutual_knn", K=50, seed=8, k=5)
    np.testing.assert_array_equal(a.null, b.null)
    assert (a.tau, a.p_value, a.calibrated) == (b.tau, b.p_value, b.calibrated)
    assert not np.array_equal(a.null, c.null)
    monkeypatch.setattr(knn_module, "INDEX_ELEMENTS", 1)  # one permutation per batch
    d = calibrate_sweep(x, y, "mutual_knn", K=50, seed=7, k=5, keep_null_grids=True)
    np.testing.assert_array_equal(a.null_grids, d.null_grids)


def test_reuses_layer_caches():
    x, y = _related(n=40)
    cx, cy = cache_layers(x, "mutual_knn", k=5), cache_layers(y, "mutual_knn", k=5)
    a = calibrate_sweep(cx, cy, "mutual_knn", K=30, seed=1)
    b = calibrate_sweep(x, y, "mutual_knn", K=30, seed=1, k=5)
    np.testing.assert_array_equal(a.null, b.null)
    assert a.params == {"k": 5}
    with pytest.raises(InputError, match="cached for metric"):
        calibrate_sweep(cx, cy, "cka", K=30)


@pytest.mark.parametrize("aggregate", ["max", "mean", "row_max_mean"])
def test_aggregates(aggregate):
    x, y = _related(n=40)
    r = calibrate_sweep(x, y, "mutual_knn", K=20, seed=0, aggregate=aggregate, keep_null_grids=True, k=5)
    g = r.sweep.scores
    expected = {"max": g.max(), "mean": g.mean(), "row_max_mean": g.max(axis=1).mean()}[aggregate]
    assert r.score == pytest.approx(expected)
    ng = r.null_grids
    expected_null = {
        "max": ng.max(axis=(1, 2)),
        "mean": ng.mean(axis=(1, 2)),
        "row_max_mean": ng.max(axis=2).mean(axis=1),
    }
    np.testing.assert_allclose(r.null, expected_null[aggregate])


# --------------------------------------------------------------------------------- generic fallback


class _OpaqueCache:
    def __init__(self, x):
        self.x = x


def test_unknown_cache_type_falls_back_to_recomputing(monkeypatch):
    """A metric whose cache has no re-indexing rule still calibrates (from Y's raw rows)."""
    base = registry.spec("unbiased_cka")

    def cache(x, **kw):
        return _OpaqueCache(x)

    def grid(xs, ys, **kw):
        out = torch.empty((len(xs), len(ys)), dtype=torch.float64)
        for i, a in enumerate(xs):
            for j, b in enumerate(ys):
                out[i, j] = base.func(a.x, b.x)
        return out

    fake = registry.MetricSpec(
        name="opaque_cka",
        func=base.func,
        layer_cache=cache,
        grid=grid,
        check_kwargs=lambda n, **kw: {},
        value_range=(-1.0, 1.0),
        symmetric=True,
        uses_k=False,
    )
    monkeypatch.setitem(registry._REGISTRY, "opaque_cka", fake)
    assert fake.permute_cache is None and fake.null_engine is None
    x, y = _related(n=30)
    ours = calibrate_sweep(x, y, "opaque_cka", K=10, alpha=0.2, seed=4)
    ref = calibrate_sweep(x, y, "unbiased_cka", K=10, alpha=0.2, seed=4)
    np.testing.assert_allclose(ours.null, ref.null, atol=1e-12)
    # LayerCaches keep their raw layers, so cached inputs fall back to recomputing too
    cached = calibrate_sweep(
        cache_layers(x, "opaque_cka"), cache_layers(y, "opaque_cka"), "opaque_cka", K=10, alpha=0.2, seed=4
    )
    np.testing.assert_allclose(cached.null, ref.null, atol=1e-12)


# --------------------------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"K": 0}, "at least 1"),
        ({"K": 2.5}, "integer"),
        ({"alpha": 0.0}, "between 0 and 1"),
        ({"alpha": 1.5}, "between 0 and 1"),
        ({"K": 10, "alpha": 0.05}, r"K >= 19"),
        ({"K": 98, "alpha": 0.01}, r"K >= 99"),
        ({"aggregate": "mx"}, "Did you mean 'max'"),
    ],
)
def test_bad_arguments(kwargs, match):
    x, y = _related(n=30)
    with pytest.raises(InputError, match=match):
        calibrate_sweep(x, y, "mutual_knn", **{"K": 50, **kwargs})


def test_bad_inputs():
    x, y = _related(n=30)
    with pytest.raises(InputError, match="same samples"):
        calibrate_sweep(x, [layer[:20] for layer in y], "mutual_knn", K=20, k=5)
    with pytest.raises(InputError, match="too few"):
        calibrate(torch.randn(3, 4), torch.randn(3, 4), "cka", K=50)
    with pytest.raises(InputError, match="calibrate_sweep"):
        calibrate(torch.stack(x, 1), torch.stack(y, 1), "cka", K=50)
    with pytest.raises(InputError, match="unknown metric"):
        calibrate(x[0], y[0], "mutal_knn", K=50)
    with pytest.raises(InputError, match="k=40"):
        calibrate(x[0], y[0], "mutual_knn", K=50, k=40)


@pytest.mark.parametrize(
    ("metric", "module", "setting", "value"),
    [
        ("mutual_knn", knn_module, "MASK_TABLE_BYTES", 30 * 30 * 4),  # one X layer per table chunk
        ("cycle_knn", knn_module, "MASK_TABLE_BYTES", 30 * 30 * 4),
        ("cka", cka_module, "STACK_BYTES", 0),  # X kernels multiplied one by one
        ("cknna", cknna_module, "NEIGHBOR_ELEMENTS", 1),  # one X layer per vectorised step
        (
            "unbiased_cka",
            cka_module,
            "available_bytes",
            lambda device=None: 1,
        ),  # no room for the gather tables
    ],
)
def test_engine_memory_limits_give_the_same_null(monkeypatch, metric, module, setting, value):
    x, y = _related(n=30)
    kw = ALL_EIGHT[metric]
    ref = calibrate_sweep(x, y, metric, K=8, alpha=0.2, seed=1, keep_null_grids=True, engine="permuted", **kw)
    monkeypatch.setattr(module, setting, value)
    ours = calibrate_sweep(x, y, metric, K=8, alpha=0.2, seed=1, keep_null_grids=True, **kw)
    np.testing.assert_allclose(ours.null_grids, ref.null_grids, atol=1e-12)
