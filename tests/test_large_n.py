"""The large-N paths give the same numbers as the (N, N) paths and stay in bounded memory."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import prh
from prh.errors import InputError
from prh.stats import bootstrap_ci, calibrate_sweep
from prh.stats.permute import random_permutations

cka_module = importlib.import_module("prh.metrics._cka")
feature_space = importlib.import_module("prh.metrics.feature_space")

pytestmark = pytest.mark.usefixtures("one_thread")


def _layers(n=60, lx=3, ly=2, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, 5, generator=g, dtype=dtype)
    x = [
        base @ torch.randn(5, 9, generator=g, dtype=dtype) + torch.randn(n, 9, generator=g, dtype=dtype)
        for _ in range(lx)
    ]
    y = [
        base @ torch.randn(5, 7, generator=g, dtype=dtype) + torch.randn(n, 7, generator=g, dtype=dtype)
        for _ in range(ly)
    ]
    return x, y


#: every metric with a feature-space path, with options that exercise its branches
PATHED = [
    ("cka", {}),
    ("unbiased_cka", {}),
    ("rv", {}),
    ("rv", {"center": False}),
    ("debiased_cka", {}),
]


@pytest.mark.parametrize(("metric", "kw"), PATHED)
def test_feature_path_equals_gram_path(metric, kw):
    x, y = _layers()
    x = [
        layer + 0.5 for layer in x
    ]  # not centred: exercises the centring (and its absence for rv center=False)
    gram = prh.sweep(x, y, metric, path="gram", **kw).scores
    feats = prh.sweep(x, y, metric, path="features", **kw).scores
    np.testing.assert_allclose(feats, gram, rtol=0, atol=1e-12)
    f = prh.metrics.get(metric)
    assert f(x[0], y[1], path="features", **kw) == pytest.approx(f(x[0], y[1], path="gram", **kw), abs=1e-12)


def test_debiased_shared_columns_feature_path_equals_gram_path():
    x, _ = _layers(n=50, lx=2)
    y = [
        layer @ torch.randn(9, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
        for layer in x
    ]
    kw = {"columns": "shared"}
    gram = prh.sweep(x, y, "debiased_cka", path="gram", **kw).scores
    np.testing.assert_allclose(
        prh.sweep(x, y, "debiased_cka", path="features", **kw).scores, gram, atol=1e-12
    )


def test_feature_path_closed_forms():
    """Unbiased HSIC from products equals Song et al.'s estimator term by term (oracles/reference_impl.py)."""
    from reference_impl import hsic_unbiased

    x, y = _layers(n=30, lx=1, ly=1)
    mx, my = feature_space.moments(x[0]), feature_space.moments(y[0])
    cross, sx, sy = feature_space.hsic_terms([mx], [my], unbiased=True)
    n = 30
    k, l = x[0] @ x[0].T, y[0] @ y[0].T  # noqa: E741  (raw, uncentred: the estimator is shift-invariant)
    assert float(cross[0, 0]) / (n * (n - 3)) == pytest.approx(float(hsic_unbiased(k, l)), rel=1e-10)
    assert float(sx[0]) / (n * (n - 3)) == pytest.approx(float(hsic_unbiased(k, k)), rel=1e-10)
    biased, _, _ = feature_space.hsic_terms([mx], [my], unbiased=False)
    xc, yc = x[0] - x[0].mean(0), y[0] - y[0].mean(0)
    assert float(biased[0, 0]) == pytest.approx(float(((xc.T @ yc) ** 2).sum()), rel=1e-12)


def test_blocking_and_layer_groups_do_not_change_the_grid(monkeypatch):
    x, y = _layers(n=50, lx=2, ly=3)
    ref = prh.sweep(x, y, "unbiased_cka", path="features").scores
    monkeypatch.setattr(feature_space, "BLOCK_BYTES", 8 * 20)  # a few rows per block
    monkeypatch.setattr(feature_space, "ACCUMULATOR_BYTES", 8 * 9 * 7)  # one Y layer per group
    np.testing.assert_allclose(
        prh.sweep(x, y, "unbiased_cka", path="features").scores, ref, rtol=0, atol=1e-12
    )


def test_auto_takes_the_feature_path_above_large_n(monkeypatch):
    x, y = _layers(n=40)
    assert prh.sweep(x, y, "unbiased_cka").params["path"] == "gram"
    monkeypatch.setattr(cka_module, "LARGE_N", 39)
    assert prh.sweep(x, y, "unbiased_cka").params["path"] == "features"
    assert prh.sweep(x, y, "cka", kernel="rbf").params["path"] == "gram"  # rbf has no feature-space form


def test_feature_path_refuses_the_rbf_kernel():
    x, y = _layers()
    with pytest.raises(InputError, match="linear kernel only"):
        prh.metrics.cka(x[0], y[0], kernel="rbf", path="features")
    with pytest.raises(InputError, match="path="):
        prh.metrics.cka(x[0], y[0], path="fast")


def test_feature_path_refuses_constant_layers():
    x, _ = _layers()
    with pytest.raises(InputError, match="constant"):
        prh.metrics.unbiased_cka(x[0], torch.ones(60, 3, dtype=torch.float64), path="features")


@pytest.mark.parametrize("engine", ["auto", "permuted", "recompute"])
@pytest.mark.parametrize(("metric", "kw"), PATHED)
def test_feature_path_null_equals_permuting_y(engine, metric, kw):
    x, y = _layers(n=40)
    perms = random_permutations(40, 5, torch.Generator().manual_seed(3))
    direct = np.stack(
        [prh.sweep(x, [layer[p] for layer in y], metric, path="gram", **kw).scores for p in perms]
    )
    res = calibrate_sweep(
        x, y, metric, K=5, alpha=0.2, seed=3, keep_null_grids=True, engine=engine, path="features", **kw
    )
    np.testing.assert_allclose(res.null_grids, direct, rtol=0, atol=1e-12)


def test_feature_path_bootstrap_equals_gram_path():
    x, y = _layers(n=40)
    a = bootstrap_ci(x, y, "unbiased_cka", B=5, seed=2, path="features")
    b = bootstrap_ci(x, y, "unbiased_cka", B=5, seed=2, path="gram")
    np.testing.assert_allclose(a.replicates, b.replicates, rtol=0, atol=1e-12)


_PEAK = """
import json, resource, sys, torch, prh
torch.manual_seed(0)
n = int(sys.argv[1])
a = torch.randn(n, 48); b = a[:, :24] + torch.randn(n, 24)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
score = prh.metrics.unbiased_cka(a, b)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"score": score, "extra_mib": (after - before) / 1024}))
"""


def test_large_n_cka_runs_in_bounded_memory():
    """N=40,000: one float64 (N, N) kernel would be 12 GiB; the default path needs well under 256 MiB (measured
    81 MiB extra peak in one run: the float64 row blocks and the (D, D) products)."""
    out = subprocess.run(
        [sys.executable, "-c", _PEAK, "40000"], capture_output=True, text=True, check=True, timeout=300
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert 0.3 < result["score"] < 1.0
    assert result["extra_mib"] < 256, result


def test_caches_that_cannot_fit_are_refused_up_front(monkeypatch):
    """An N x N request beyond the memory budget is one InputError with the estimate and the way out."""
    monkeypatch.setenv("PRH_MEMORY_LIMIT", str(2**20))
    x, y = _layers(n=600)
    with pytest.raises(InputError, match=r"needs about .*MiB.*path='features'"):
        prh.sweep(x, y, "cka", kernel="rbf")
    with pytest.raises(InputError, match=r"needs about .*mutual_knn"):
        prh.metrics.cknna(x[0], y[0])
    assert prh.sweep(x, y, "cka", path="features").scores.shape == (3, 2)  # the way out works


def test_a_null_that_cannot_fit_is_refused_before_any_work(monkeypatch):
    x, y = _layers(n=40)
    with pytest.raises(InputError, match=r"K=1000000000000 .*needs about .*TiB.*fewer permutations"):
        calibrate_sweep(x, y, "mutual_knn", K=10**12, k=5)
    monkeypatch.setenv("PRH_MEMORY_LIMIT", "not-a-number")
    with pytest.raises(InputError, match="PRH_MEMORY_LIMIT"):
        calibrate_sweep(x, y, "mutual_knn", K=100, k=5)


# ----------------------------------------------------------------------------------- approximate neighbours


def _clustered(n=2000, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(40, 48, generator=g)
    x = centres[torch.randint(40, (n,), generator=g)] + 0.6 * torch.randn(n, 48, generator=g)
    y = x @ torch.randn(48, 24, generator=g) + 0.8 * torch.randn(n, 24, generator=g)
    return torch.nn.functional.normalize(x, dim=1), torch.nn.functional.normalize(y, dim=1)


@pytest.mark.parametrize("metric", ["mutual_knn", "jaccard_knn", "cycle_knn"])
def test_approximate_neighbours_report_their_measured_recall(metric):
    pytest.importorskip("faiss")
    x, y = _clustered()
    exact = prh.sweep(x, y, metric, k=10)
    approx = prh.sweep(x, y, metric, k=10, neighbors="approximate")
    assert approx.params == {"k": 10, "neighbors": "approximate"} and exact.params == {"k": 10}
    recalls = [d["recall"] for side in ("x", "y") for d in approx.diagnostics[side]]
    assert len(recalls) == 2 and min(recalls) >= 0.95  # the option's defaults reach 0.95 recall
    assert abs(approx.best - exact.best) < 0.02
    assert not exact.diagnostics and "diagnostics" not in exact.to_dict()


def test_measured_recall_is_the_true_recall_of_the_lists():
    pytest.importorskip("faiss")
    from prh.metrics.neighbors import approximate_knn, knn_indices

    x, _ = _clustered(n=1500)
    knn, recall = approximate_knn(x, 10)
    true = float((knn[:, :, None] == knn_indices(x, 10)[:, None, :]).any(dim=2).double().mean())
    assert abs(recall - true) < 0.02  # 512 sampled queries estimate the recall of all 1500
    assert not bool((knn == torch.arange(1500)[:, None]).any())  # self excluded


def test_search_breadth_is_tuned_until_the_measured_recall_reaches_the_target(monkeypatch):
    """Near-isotropic 768-d data is hard for HNSW: the starting breadth gives ~0.93; the tuning must lift it to the
    target, and the reported recall (on queries disjoint from the tuning ones) must be the lists' true recall."""
    pytest.importorskip("faiss")
    from prh.metrics import neighbors

    x = torch.nn.functional.normalize(
        torch.randn(4000, 768, generator=torch.Generator().manual_seed(0)), dim=1
    )
    true_lists = neighbors.knn_indices(x, 10)

    def true_recall(knn):
        return float((knn[:, :, None] == true_lists[:, None, :]).any(dim=2).double().mean())

    monkeypatch.setattr(neighbors, "MAX_EF_SEARCH", 64)  # no tuning: the starting breadth only
    untuned, untuned_recall = neighbors.approximate_knn(x, 10)
    assert untuned_recall < neighbors.TARGET_RECALL  # the case needs the tuning
    monkeypatch.undo()
    knn, recall = neighbors.approximate_knn(x, 10)
    assert recall >= neighbors.TARGET_RECALL and true_recall(knn) >= neighbors.TARGET_RECALL
    assert abs(recall - true_recall(knn)) < 0.02 and abs(untuned_recall - true_recall(untuned)) < 0.02


def test_approximate_neighbours_calibrate_and_bootstrap():
    pytest.importorskip("faiss")
    x, y = _clustered(n=600)
    cal = calibrate_sweep(x, y, "mutual_knn", K=19, k=10, neighbors="approximate")
    assert cal.p_value == pytest.approx(1 / 20) and cal.params["neighbors"] == "approximate"
    ci = bootstrap_ci(x, y, "mutual_knn", B=3, k=10, neighbors="approximate")  # rows, not the stored Gram
    assert ci.params["neighbors"] == "approximate" and ci.ci_low <= ci.score <= ci.ci_high


def test_approximate_without_faiss_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    x, y = _clustered(n=200)
    with pytest.raises(InputError, match="faiss-cpu"):
        prh.metrics.mutual_knn(x, y, neighbors="approximate")
    with pytest.raises(InputError, match="neighbors="):
        prh.metrics.mutual_knn(x, y, neighbors="fast")


def test_prh_score_prints_the_recall_next_to_the_score(tmp_path):
    pytest.importorskip("faiss")
    from typer.testing import CliRunner

    from prh.cli import app

    x, y = _clustered(n=800)
    np.save(tmp_path / "a.npy", x.numpy())
    np.save(tmp_path / "b.npy", y.numpy())
    args = ["score", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), "-O", "neighbors=approximate"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "mutual_knn" in res.output and "measured recall" in res.output
    data = json.loads(CliRunner().invoke(app, [*args, "--json"]).stdout)
    assert data["params"]["neighbors"] == "approximate" and data["diagnostics"]["x"][0]["recall"] >= 0.95


@pytest.mark.parametrize("metric", ["cka", "unbiased_cka"])
def test_float32_feature_path_stays_at_float32_rounding(metric):
    """float32 layers use float32 block products (float64 accumulation): within 1e-6 of the float64 answer, related
    or unrelated (measured ~6e-9 at N=3000)."""
    x, y = _layers(n=500, dtype=torch.float32)
    unrelated = [torch.randn(500, 7, generator=torch.Generator().manual_seed(9))]
    for other in (y, unrelated):
        exact = prh.sweep(
            [t.double() for t in x], [t.double() for t in other], metric, path="features"
        ).scores
        fast = prh.sweep(x, other, metric, path="features").scores
        np.testing.assert_allclose(fast, exact, rtol=0, atol=1e-6)
