"""`prh experiment blind-match`: the solvers on planted and independent problems, seeds kept, accuracy and top-k
against literal loops, the cost plan, bad arguments (API and CLI), and the experiment end to end on tiny models."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from prh.errors import InputError
from prh.experiments import RunOptions, _matching, blind_match, names, run
from test_experiments import N, tiny  # noqa: F401  (the shared tiny models + dataset fixture)


def _planted(n: int, noise: float, seed: int = 0, dim: int = 32):
    """X (n, dim) with a common offset; Y = X rotated plus noise; Y's rows hidden by a random permutation."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, dim)) + 0.5 * rng.standard_normal(dim)
    q, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    y = x @ q + noise / np.sqrt(dim) * rng.standard_normal((n, dim))
    sigma = rng.permutation(n)
    return _matching.kernel(x), _matching.kernel(y[sigma]), np.argsort(sigma)


# -- the kernel -------------------------------------------------------------------------------------------------
def test_kernel_is_the_standardised_gram_matrix_and_rotation_invariant():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((12, 5))
    k = x @ x.T
    off = ~np.eye(12, dtype=bool)
    want = (k - k[off].mean()) / (k - k[off].mean())[off].std()
    np.fill_diagonal(want, 0.0)
    got = _matching.kernel(x)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[off].mean() == pytest.approx(0.0, abs=1e-12) and got[off].std() == pytest.approx(1.0)
    q, _ = np.linalg.qr(rng.standard_normal((5, 5)))
    np.testing.assert_allclose(_matching.kernel(3.0 * x @ q), got, atol=1e-10)
    with pytest.raises(InputError, match="constant kernel"):
        _matching.kernel(np.ones((5, 3)))


# -- accuracy and top-k against literal loops -------------------------------------------------------------------
def test_accuracy_and_top_k_match_literal_loops():
    rng = np.random.default_rng(1)
    n = 20
    scores = rng.standard_normal((n, n))
    scores[3, :] = 0.0  # a row of ties: the true row counts as rank n
    truth = rng.permutation(n)
    perm = rng.permutation(n)
    exclude = np.array([0, 5])
    keep = [i for i in range(n) if i not in exclude]
    assert _matching.accuracy(perm, truth, exclude) == pytest.approx(
        np.mean([perm[i] == truth[i] for i in keep])
    )
    for k in (1, 5):
        hits = []
        for i in keep:
            better_or_tied = sum(1 for c in range(n) if scores[i, c] >= scores[i, truth[i]])
            hits.append(better_or_tied <= k)
        assert _matching.top_k(scores, truth, k, exclude) == pytest.approx(np.mean(hits))
    assert _matching.top_k(scores, truth, n) == 1.0


@pytest.mark.parametrize("method", _matching.METHODS)
def test_top_1_is_the_accuracy_and_top_k_never_below(method):
    a, b, truth = _planted(30, noise=1.0, seed=5)
    res = _matching.match(a, b, method, restarts=1)
    acc = _matching.accuracy(res.perm, truth)
    assert _matching.top_k(res.scores, truth, 1) == pytest.approx(acc)
    assert acc <= _matching.top_k(res.scores, truth, 5) <= _matching.top_k(res.scores, truth, 10)


# -- the solvers ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["qap", "gw", "gw-entropic"])
def test_planted_pairing_is_recovered(method):
    a, b, truth = _planted(100, noise=0.3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = _matching.match(a, b, method, restarts=1)
    assert _matching.accuracy(result.perm, truth) >= 0.95
    assert _matching.top_k(result.scores, truth, 5) >= 0.95
    assert sorted(result.perm.tolist()) == list(range(100))
    assert result.objective == pytest.approx(_matching.objective(a, b, result.perm))


def test_gw_through_the_torch_backend_equals_numpy():
    """The path the GPU takes (POT's torch backend), here on the CPU: the same coupling as numpy's."""
    a, b, truth = _planted(40, noise=0.3, seed=2)
    for method in ("gw", "gw-entropic"):
        ref = _matching.match(a, b, method)
        via_torch = _matching.match(a, b, method, device="cpu")
        np.testing.assert_allclose(via_torch.scores, ref.scores, atol=1e-8)
        np.testing.assert_array_equal(via_torch.perm, ref.perm)
        assert _matching.accuracy(ref.perm, truth) >= 0.95


def test_signature_baseline_beats_chance_on_the_planted_problem_and_is_equivariant():
    a, b, truth = _planted(100, noise=0.3)
    res = _matching.match(a, b, "signature")
    assert _matching.accuracy(res.perm, truth) > 0.05  # chance 0.01
    q = np.random.default_rng(3).permutation(100)  # reorder b's rows and columns: the answer follows
    res_q = _matching.match(a, b[np.ix_(q, q)], "signature")
    np.testing.assert_array_equal(q[res_q.perm], res.perm)


@pytest.mark.parametrize("method", _matching.METHODS)
def test_independent_kernels_match_at_chance(method):
    n, problems = 40, 3
    correct = 0
    for s in range(problems):
        rng = np.random.default_rng(100 + s)
        a = _matching.kernel(rng.standard_normal((n, 16)))
        b = _matching.kernel(rng.standard_normal((n, 16)))
        truth = rng.permutation(n)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = _matching.match(a, b, method, restarts=1)
        correct += int((res.perm == truth).sum())
    lo, hi = stats.binom.interval(0.99, n * problems, 1 / n)
    assert lo <= correct <= hi


def test_seeded_qap_never_reassigns_a_seed_and_helps():
    a, b, truth = _planted(60, noise=1.2, seed=4)
    rng = np.random.default_rng(0)
    for s in (1, 6, 30):
        items = rng.choice(60, size=s, replace=False)
        wrong = (truth[items] + 1) % 60  # deliberately wrong "known" pairs must still be kept
        for rows in (truth[items], wrong):
            if len(np.unique(rows)) < s:
                continue
            res = _matching.match(a, b, "qap", seeds=np.stack([items, rows], 1), restarts=2)
            np.testing.assert_array_equal(res.perm[items], rows)
            assert sorted(res.perm.tolist()) == list(range(60))
    # the experiment's own solve() scores the unseeded items and reports chance 1/(n - s)
    problem = blind_match.Problem(a, b, truth)
    config = blind_match.BlindMatchConfig(restarts=1)
    out = blind_match.solve(problem, "qap", 6, config, np.random.default_rng(1))
    assert out["seeds_kept"] and out["chance"] == pytest.approx(1 / 54)


def test_bad_arguments_are_one_clear_error():
    a, b, _ = _planted(10, noise=0.1)
    with pytest.raises(InputError, match=r"seeds: 10 known pairs of n=10"):
        _matching.match(a, b, "qap", seeds=np.stack([np.arange(10), np.arange(10)], 1))
    with pytest.raises(InputError, match=r"method='qapp'.*Did you mean 'qap'"):
        _matching.match(a, b, "qapp")
    with pytest.raises(InputError, match="qap' only"):
        _matching.match(a, b, "gw", seeds=np.array([[0, 1]]))
    with pytest.raises(InputError, match="one shape"):
        _matching.match(a, b[:5, :5])
    with pytest.raises(InputError, match="N=50"):
        blind_match.parse_sizes("10,100", 50)
    with pytest.raises(InputError, match="fraction"):
        blind_match.parse_seeds("0,1.0")
    with pytest.raises(InputError, match="methods"):
        blind_match.BlindMatchConfig(methods="qap,hungarian")
    with pytest.raises(InputError, match="name=index"):
        blind_match.BlindMatchConfig(layers="minilm-l6")
    with pytest.raises(InputError, match="seeds=10 known pairs of n=10"):
        blind_match.solve(blind_match.Problem(a, b, np.arange(10)), "qap", 10, blind_match.BlindMatchConfig(),
                          np.random.default_rng(0))  # fmt: skip


def test_sizes_seeds_and_the_cost_plan():
    assert blind_match.parse_sizes("auto", 320) == [10, 32, 100, 320]
    assert blind_match.parse_sizes("auto", 2000) == [10, 32, 100, 320, 1024]
    assert blind_match.parse_sizes("100, 10", 100) == [10, 100]
    assert blind_match.parse_seeds("0.1,0.01") == [0.0, 0.01, 0.1]
    assert [blind_match.seed_count(0.01, n) for n in (10, 100, 320)] == [1, 1, 3]
    assert blind_match.seed_count(0.0, 100) == 0
    costs = blind_match.estimate({"qap": 1.0, "gw": 2.0}, 10, [("qap", 10, 3), ("qap", 20, 3), ("gw", 20, 1)])
    assert costs == {("qap", 10): 3.0, ("qap", 20): 24.0, ("gw", 20): 16.0}
    kept, dropped = blind_match.plan(costs, 20.0)
    assert kept == {("qap", 10), ("gw", 20)} and dropped == [("qap", 20)]
    kept, dropped = blind_match.plan({("gw", 10): 30.0, ("gw", 20): 1.0}, 5.0)  # never a gap in a curve
    assert kept == set() and dropped == [("gw", 10), ("gw", 20)]


# -- the experiment ---------------------------------------------------------------------------------------------
def test_blind_match_is_registered():
    assert "blind-match" in names()


def _options(tiny, name):  # noqa: F811
    return RunOptions(
        models="exptiny", dataset=str(tiny["data"]), store=str(tiny["root"] / "store"),
        out=str(tiny["root"] / name), device="cpu", progress=False,
    )  # fmt: skip


def test_blind_match_end_to_end_on_tiny_models(tiny):  # noqa: F811
    config = {"sizes": f"10,{N}", "subsets": 1, "seeds": "0,0.1", "scan_n": 10, "k": 3, "restarts": 1}
    result = run("blind-match", _options(tiny, "blind"), config)
    grid = pd.read_csv(result.folder / "matches.csv")
    # one vision model: focus pairs best, worst, control (2 language models)
    assert set(grid["role"]) == {"best", "worst", "control"}
    # 3 roles x 2 sizes x 1 subset x (4 methods + seeded qap)
    assert len(grid) == 3 * 2 * 1 * 5
    assert grid["seeds_kept"].all()
    seeded = grid[grid["seeds"] > 0]
    assert set(seeded["method"]) == {"qap"} and set(seeded["seeds"]) == {1, 3}
    np.testing.assert_allclose(grid["chance"], 1 / (grid["n"] - grid["seeds"]))
    assert grid["accuracy"].between(0, 1).all() and (grid["top5"] >= grid["accuracy"]).all()
    curves = pd.read_csv(result.folder / "curves.csv")
    assert (curves["ci_low"] <= curves["accuracy"] + 1e-12).all()
    scan = pd.read_csv(result.folder / "scan.csv")
    assert len(scan) == 2 * 1  # 2 cross-modal pairs x 1 subset
    for fig in ("accuracy_vs_n.png", "accuracy_vs_seeds.png", "accuracy_vs_alignment.png"):
        assert (result.folder / "figures" / fig).stat().st_size > 0
    assert (result.folder.parents[1] / "sections" / "65-blind-match.html").is_file()
    assert "best" in result.summary["accuracy"] and "control" in result.summary["focus"]
    # with 2 pairs the correlation is undefined: said, not a crash
    assert "error" in result.summary["correlation"]["mutual_knn"]


def test_blind_match_refuses_an_hours_long_grid_with_its_estimate(tiny):  # noqa: F811
    config = {"sizes": f"10,{N}", "subsets": 1000, "max_minutes": 0.01, "scan_n": 0}
    with pytest.raises(InputError, match=r"estimated at .*max-minutes"):
        run("blind-match", _options(tiny, "refuse"), config)


def test_cli_bad_arguments_print_one_line_and_exit_2(tiny, monkeypatch, capsys):  # noqa: F811
    from prh.cli import main

    common = ["experiment", "blind-match", "--models", "exptiny", "--models-file", str(tiny["models"]),
              "--dataset", str(tiny["data"]), "--store", str(tiny["root"] / "store"), "--device", "cpu",
              "--no-progress", "--no-report"]  # fmt: skip
    for extra, match in (
        (["--sizes", "10,1000"], f"N={N}"),
        (["--seeds", "0,2"], "fraction"),
        (["--methods", "qap,magic"], "methods"),
    ):
        out = tiny["root"] / f"cli{len(extra[1])}"
        monkeypatch.setattr(sys, "argv", ["prh", *common, "--out", str(out), *extra])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2 and match in err and "Traceback" not in err
        assert (
            len([line for line in err.splitlines() if line.strip()]) <= 2
        )  # one message (wrapped at most once)


def test_layers_from_a_stored_alignment_result_and_given_layers(tmp_path):
    from prh.align.engine import Results

    table = pd.DataFrame(
        [
            {"model_x": "lang", "model_y": "vis", "modality_x": "language", "modality_y": "vision",
             "metric": "mutual_knn", "N": 30, "score": 0.2, "control": "none", "best_layer_x": 3, "best_layer_y": 7},
            {"model_x": "lang", "model_y": "vis", "modality_x": "language", "modality_y": "vision",
             "metric": "cka", "N": 30, "score": 0.5, "control": "none", "best_layer_x": 1, "best_layer_y": 1},
        ]
    )  # fmt: skip
    Results(table).save(tmp_path / "align")
    layers = blind_match._stored_layers(str(tmp_path / "align"))
    assert layers == {("lang", "vis"): (3, 7), ("vis", "lang"): (7, 3)}  # mutual kNN rows only, both orders
    assert blind_match.parse_layers("a=2, b=-1") == {"a": 2, "b": -1}
    with pytest.raises(InputError, match="out of range"):
        blind_match._pick_layer([0, 1, 2], 3, "a")
    assert blind_match._pick_layer([0, 1, 2], -1, "a") == 2
