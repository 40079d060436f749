"""`prh score` end to end through the CLI (typer's runner), including errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import prh
from prh.cli import app

runner = CliRunner()


@pytest.fixture
def arrays(tmp_path):
    rng = np.random.default_rng(0)
    a = rng.standard_normal((50, 3, 12)).astype(np.float32)
    b = rng.standard_normal((50, 2, 9)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)
    np.savez(tmp_path / "b.npz", feats=b)
    np.save(tmp_path / "a2.npy", a[:, 0])
    np.save(tmp_path / "b2.npy", b[:, 1])
    return tmp_path, a, b


def test_two_dimensional_inputs_give_one_score(arrays):
    d, a, b = arrays
    res = runner.invoke(
        app, ["score", str(d / "a2.npy"), str(d / "b2.npy"), "--metric", "cknna", "--k", "5", "--json"]
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["metric"] == "cknna" and out["params"]["k"] == 5
    assert out["score"] == pytest.approx(prh.metrics.cknna(a[:, 0], b[:, 1], k=5))


def test_three_dimensional_inputs_give_a_sweep(arrays):
    d, a, b = arrays
    res = runner.invoke(app, ["score", str(d / "a.npy"), str(d / "b.npz"), "--prepare", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    expected = prh.sweep(prh.prepare(a), prh.prepare(b), "mutual_knn", k=10)
    assert out["best_layers"] == list(expected.best_layers)
    np.testing.assert_allclose(out["grid"], expected.scores)


def test_errors_exit_2_with_one_line(arrays, tmp_path, capsys):
    d, _, _ = arrays
    np.save(tmp_path / "pickled.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    from prh.cli import main

    for argv, msg in [
        (["score", str(d / "a.npy"), str(tmp_path / "pickled.npy")], "pickled"),
        (["score", str(d / "a.npy"), str(d / "b.npz"), "--metric", "mutal_knn"], "Did you mean 'mutual_knn'"),
        (
            ["score", str(d / "a.npy"), str(d / "b.npz"), "--metric", "cka", "--k", "3"],
            "--k is not an option of cka",
        ),
        (["score", str(d / "a.npy"), str(d / "missing.npy")], "does not exist"),
    ]:
        import sys

        old = sys.argv
        sys.argv = ["prh", *argv]
        try:
            with pytest.raises(SystemExit) as exc:
                main()
        finally:
            sys.argv = old
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert msg in err and err.startswith("error: ") and "Traceback" not in err


def test_help_lists_commands():
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0 and "score" in res.output


def test_generic_metric_options(arrays):
    d, a, b = arrays
    res = runner.invoke(
        app,
        [
            "score",
            str(d / "a2.npy"),
            str(d / "b2.npy"),
            "--metric",
            "rsa",
            "-O",
            "rdm=euclidean",
            "-O",
            "compare=pearson",
            "--json",
        ],
    )
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["score"] == pytest.approx(
        prh.metrics.rsa(a[:, 0], b[:, 1], rdm="euclidean", compare="pearson")
    )
    res = runner.invoke(app, ["score", str(d / "a2.npy"), str(d / "b2.npy"), "-O", "oops"])
    assert "key=value" in str(res.exception)
