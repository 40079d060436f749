"""Bad input, table-driven: every case gives one clear error that names the argument or file — never a silent
number, never a traceback (issue 14). Python API cases assert the exception type and message; CLI cases run the
real entry point (``prh.cli.main``) and assert exit status 2, one ``error:`` line naming the culprit, no traceback.
"""

from __future__ import annotations

import json
import pickle
import sys

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import prh
from prh.errors import InputError

KNN_METRICS = [m for m in prh.metrics.names() if prh.metrics.spec(m).uses_k]


def _random(n=24, d=6, seed=0):
    return torch.nn.functional.normalize(
        torch.randn(n, d, generator=torch.Generator().manual_seed(seed)), dim=1
    )


# ------------------------------------------------------------------------------------------ Python API


@pytest.mark.parametrize("metric", KNN_METRICS)
@pytest.mark.parametrize("which", ["both", "A", "B"])
def test_constant_features_are_refused_by_every_neighbour_metric(metric, which):
    """Neighbours of identical points are ties: never 1.0 for two constant inputs, always a named refusal."""
    const, rand = torch.ones(24, 6), _random()
    a, b = {"both": (const, const * 2), "A": (const, rand), "B": (rand, const)}[which]
    with pytest.raises(InputError, match=r"constant") as err:
        prh.metrics.get(metric)(a, b, k=3)
    assert str(err.value).startswith("B:" if which == "B" else "A:")


@pytest.mark.parametrize("metric", prh.metrics.names())
def test_constant_features_never_give_a_score(metric):
    const = torch.full((24, 6), 0.3)
    with pytest.raises(InputError):
        prh.metrics.get(metric)(const, const.clone())


def test_constant_layer_in_a_sweep_names_the_model():
    x = torch.stack([_random(seed=1), torch.ones(24, 6)], dim=1)  # layer 1 is constant
    with pytest.raises(InputError, match=r"^Y: .*constant"):
        prh.sweep(_random(seed=2)[:, None, :], x, "mutual_knn", k=3)


def test_constant_inputs_are_not_called_significant():
    const = torch.ones(30, 4)
    with pytest.raises(InputError, match="constant"):
        prh.stats.calibrate(const, const.clone(), "mutual_knn", K=99, k=3)


def test_nearly_constant_but_distinct_features_still_score():
    """Only truly identical samples are refused: a tiny but real spread is data."""
    base = torch.ones(24, 6)
    x = base + 1e-3 * _random(seed=3)
    assert 0.0 <= prh.metrics.mutual_knn(x, _random(), k=3) <= 1.0


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_features_are_refused(dtype):
    a = (np.random.default_rng(0).normal(size=(20, 4)) + 1j).astype(dtype)
    with pytest.raises(InputError, match=r"A has complex dtype"):
        prh.metrics.mutual_knn(a, np.ones((20, 4)), k=3)
    with pytest.raises(InputError, match=r"complex"):
        prh.prepare(a)


def test_cknna_with_three_samples_states_the_n4_rule():
    with pytest.raises(InputError, match=r"at least N=4"):
        prh.metrics.cknna(torch.randn(3, 4), torch.randn(3, 4), k=2)


# ------------------------------------------------------------------------------------------ CLI


def _cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run ``prh ARGS`` through the real entry point; return (exit status, stderr)."""
    from prh.cli import main

    monkeypatch.setattr(sys, "argv", ["prh", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    return exc.value.code, capsys.readouterr().err


def _write_bad_files(tmp_path):
    good = np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32)
    np.save(tmp_path / "good.npy", good)
    (tmp_path / "garbage.npy").write_bytes(b"this is not an array at all")
    (tmp_path / "garbage.safetensors").write_bytes(b"\x01\x02garbage")
    (tmp_path / "garbage.npz").write_bytes(b"PK\x03\x04 truncated zip")
    (tmp_path / "pickled.npy").write_bytes(pickle.dumps({"feats": [1, 2, 3]}))
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    np.savez(tmp_path / "two.npz", first=good, second=good)
    save_file({"x": good, "y": good}, str(tmp_path / "two.safetensors"))
    np.save(tmp_path / "complex.npy", good.astype(np.complex64))
    np.save(tmp_path / "const.npy", np.ones((20, 4), dtype=np.float32))
    full = tmp_path / "full.npy"
    np.save(full, good)
    full.write_bytes(full.read_bytes()[:-40])  # truncated payload


CLI_CASES = [
    # (argv after "prh score", the words the one error line must contain)
    (["garbage.npy", "good.npy"], ["garbage.npy", "not a valid .npy file"]),
    (["good.npy", "garbage.safetensors"], ["garbage.safetensors", "not a readable .safetensors"]),
    (["garbage.npz", "good.npy"], ["garbage.npz", "corrupt"]),
    (["pickled.npy", "good.npy"], ["pickled.npy", "pickle", "never unpickles"]),
    (["objects.npy", "good.npy"], ["objects.npy", "pickled Python objects"]),
    (["full.npy", "good.npy"], ["full.npy"]),
    (["two.npz", "good.npy"], ["two.npz", "--key-a"]),
    (["good.npy", "two.safetensors"], ["two.safetensors", "--key-b"]),
    (["complex.npy", "good.npy"], ["complex"]),
    (["const.npy", "good.npy", "--metric", "mutual_knn", "--k", "3"], ["A:", "constant"]),
    (["missing.npy", "good.npy"], ["missing.npy", "does not exist"]),
    (["good.npy"], ["two feature files", "--list"]),
    (["good.npy", "good.npy", "--metric", "mutal_knn"], ["mutal_knn", "mutual_knn"]),
]


@pytest.mark.parametrize(("argv", "words"), CLI_CASES, ids=[" ".join(c[0]) for c in CLI_CASES])
def test_prh_score_bad_input_is_one_clear_line(tmp_path, monkeypatch, capsys, argv, words):
    _write_bad_files(tmp_path)
    monkeypatch.chdir(tmp_path)
    code, err = _cli(monkeypatch, capsys, "score", *argv)
    assert code == 2
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def test_prh_score_list_is_an_option():
    from typer.testing import CliRunner

    from prh.cli import app

    res = CliRunner().invoke(app, ["score", "--list", "--json"])
    assert res.exit_code == 0
    rows = json.loads(res.stdout)
    assert [r["metric"] for r in rows] == prh.metrics.names()
    assert all({"options", "range", "description"} <= set(r) for r in rows)
