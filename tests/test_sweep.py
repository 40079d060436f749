"""prh.sweep: the grid equals the reference's per-pair loop, best pair semantics, chunking, bad input."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

import prh
import reference_impl as reference
from conftest import REFERENCE_EIGHT
from prh._sweep import cache_layers, sweep_caches, sweep_many
from prh.errors import InputError


def _model(n, layers, d, seed, base=None):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(layers):
        x = torch.randn(n, d, generator=g)
        if base is not None:
            x = base[:, :d] @ torch.randn(d, d, generator=g) * 0.8 + x * 0.6
        out.append(x)
    return prh.prepare(torch.stack(out, dim=1))


@pytest.mark.parametrize("metric", REFERENCE_EIGHT)
def test_grid_equals_reference_loop(metric):
    base = torch.randn(60, 24, generator=torch.Generator().manual_seed(0))
    x = _model(60, 3, 24, 1, base)
    y = _model(60, 2, 16, 2, base)
    kw = {"k": 6} if metric in ("mutual_knn", "cycle_knn", "lcs_knn", "edit_distance_knn", "cknna") else {}
    ours = prh.sweep(x, y, metric, **kw)
    grid, best, pair = reference.compute_score(list(x.unbind(1)), list(y.unbind(1)), metric, **kw)
    np.testing.assert_allclose(ours.scores, grid, atol=1e-4)
    assert ours.scores.shape == (3, 2)
    if pair is not None:
        assert ours.best_layers == pair
        assert ours.best == pytest.approx(best, abs=1e-4)


def test_best_pair_is_returned_even_when_all_scores_are_negative():
    scores = np.array([[-0.3, -0.2], [-0.1, -0.5]])
    s = prh.Sweep(scores, "unbiased_cka")
    assert s.best_layers == (1, 0) and s.best == -0.1


def test_lists_of_layers_with_different_widths_and_identity_diagonal():
    g = torch.Generator().manual_seed(3)
    layers = [torch.nn.functional.normalize(torch.randn(40, d, generator=g), dim=1) for d in (8, 16, 32)]
    s = prh.sweep(layers, layers, "mutual_knn", k=5)
    np.testing.assert_allclose(np.diag(s.scores), 1.0)
    assert s.best == 1.0
    for metric, kw in (("cka", {}), ("cknna", {}), ("svcca", {"dim": 4})):
        np.testing.assert_allclose(np.diag(prh.sweep(layers, layers, metric, **kw).scores), 1.0, atol=1e-9)


@pytest.mark.parametrize("metric", ["mutual_knn", "cycle_knn", "lcs_knn", "unbiased_cka"])
def test_chunked_grid_equals_unchunked(metric, monkeypatch):
    x, y = _model(50, 4, 12, 4), _model(50, 5, 10, 5)
    full = prh.sweep(x, y, metric).scores
    monkeypatch.setattr(sys.modules["prh.metrics.knn"], "_BATCH_ELEMENTS", 1)
    monkeypatch.setattr(sys.modules["prh.metrics._cka"], "_STACK_ELEMENTS", 1)
    np.testing.assert_allclose(prh.sweep(x, y, metric).scores, full, rtol=1e-12, atol=1e-15)


def test_row_blocks_of_neighbour_search_equal_one_block(monkeypatch):
    x = _model(70, 1, 9, 6)[:, 0]
    from prh.metrics.neighbors import knn_indices

    whole = knn_indices(x, 5)
    monkeypatch.setattr("prh.metrics.neighbors.ROW_BLOCK", 16)
    assert torch.equal(knn_indices(x, 5), whole)


def test_cached_layers_are_reused_across_models():
    x, y1, y2 = _model(30, 2, 8, 7), _model(30, 3, 8, 8), _model(30, 1, 8, 9)
    results = sweep_many(x, [y1, y2], "cka")
    np.testing.assert_allclose(results[1].scores, prh.sweep(x, y2, "cka").scores)
    cx = cache_layers(x, "cka")
    np.testing.assert_allclose(sweep_caches(cx, cache_layers(y1, "cka")).scores, results[0].scores)


def test_to_dict_is_json_ready():
    s = prh.sweep(_model(20, 2, 4, 1), _model(20, 2, 4, 2), "mutual_knn", k=3)
    d = s.to_dict()
    assert d["metric"] == "mutual_knn" and d["params"] == {"k": 3}
    assert d["best_layers"] == list(s.best_layers) and len(d["grid"]) == 2


def test_bad_inputs():
    x = _model(20, 2, 4, 1)
    with pytest.raises(InputError, match="same samples"):
        prh.sweep(x, _model(21, 2, 4, 1))
    with pytest.raises(InputError, match="empty list"):
        prh.sweep([], x)
    with pytest.raises(InputError, match=r"X\[1\] has N=19"):
        prh.sweep([x[:, 0], x[:19, 1]], x)
    with pytest.raises(InputError, match=r"got an array of shape \(1, 20, 2, 4\)"):
        prh.sweep(x[None], x)
    with pytest.raises(InputError, match="different metrics"):
        sweep_caches(cache_layers(x, "cka"), cache_layers(x, "mutual_knn"))


@pytest.mark.parametrize("metric", [m for m in prh.metrics.names() if prh.metrics.spec(m).layer_caches])
def test_batched_layer_caches_equal_one_layer_at_a_time(metric, monkeypatch):
    """The Gram-first batched caches (in chunks of one and of several layers) score exactly like per-layer caches."""
    from prh.metrics import kernels

    spec = prh.metrics.spec(metric)
    layers = [
        torch.nn.functional.normalize(torch.randn(40, d, generator=torch.Generator().manual_seed(d)), dim=1)
        for d in (8, 12, 16, 20, 24)
    ]
    params = spec.check_kwargs(40, **({"k": 5} if spec.uses_k else {}))
    single = [spec.layer_cache(x, **params) for x in layers]
    expected = spec.grid(single, single, **params)
    for chunk_bytes in (
        1,
        2 * 40 * 40 * 4,
        kernels.GRAM_CHUNK_BYTES,
    ):  # 1 layer, 2 layers, all layers per chunk
        monkeypatch.setattr(kernels, "GRAM_CHUNK_BYTES", chunk_bytes)
        batched = spec.caches(layers, **params)
        assert len(batched) == len(layers)
        torch.testing.assert_close(spec.grid(batched, batched, **params), expected, rtol=0, atol=0)
