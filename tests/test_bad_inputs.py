"""Bad input, table-driven: every case gives one clear error that names the argument or file — never a silent
number, never a traceback. Python API cases assert the exception type and message; CLI cases run the
real entry point (``prh.cli.main``) and assert exit status 2, one ``error:`` line naming the culprit, no traceback.
"""

from __future__ import annotations

import json
import os
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


# ------------------------------------------------------------------------------------------ models files -------------

_MODEL = '[[model]]\nname = "x"\nsource = "y"\nadapter = "hf-vision"\n'
_CODE = (
    '[[model]]\nname = "cnn"\nsource = "cnn"\nadapter = "torch-module"\nmodality = "vision"\n'
    '[model.options]\nbuilder = "os:system"\nbuilder_kwargs = {{ command = "touch {marker}" }}\n'
)
MODELS_FILE_CASES = [
    # (models-file text, the words the error must contain besides the file name)
    (_MODEL + 'params = "lots"\n', ["model 'x'", "params='lots'", "integer"]),
    (_MODEL.replace('source = "y"', "source = 42"), ["model 'x'", "source=42", "string"]),
    (_MODEL + 'layers = "layer1"\n', ["model 'x'", "layers='layer1'", "list of strings"]),
    (_MODEL + 'trust_remote_code = "false"\n', ["model 'x'", "trust_remote_code='false'", "true or false"]),
    (_MODEL + "[model.options]\nimage_size = 22.4\n", ["model 'x'", "options.image_size=22.4"]),
    (_MODEL + 'colour = "red"\n', ["model 'x'", "unknown field", "colour"]),
    (_CODE, ["model 'cnn'", "module 'os'", "os:system", "refused", "--trust-code"]),
    (  # the file's own trust_code = true only asks
        _CODE.replace('modality = "vision"\n', 'modality = "vision"\ntrust_code = true\n'),
        ["model 'cnn'", "module 'os'", "os:system", "refused", "--trust-code"],
    ),
]
_MODELS_IDS = [
    "params",
    "source",
    "layers",
    "trust_remote_code",
    "image_size",
    "unknown",
    "builder",
    "self-trust",
]


@pytest.fixture
def fresh_registry(monkeypatch):
    from prh.models import reset_registry

    monkeypatch.delenv("PRH_MODELS", raising=False)
    reset_registry()
    yield
    reset_registry()


@pytest.mark.parametrize(("text", "words"), MODELS_FILE_CASES, ids=_MODELS_IDS)
def test_models_file_bad_fields_python_api(tmp_path, fresh_registry, text, words):
    from prh.models import get_model, load_user_config

    f = tmp_path / "models.toml"
    f.write_text(text.format(marker=tmp_path / "pwned"))
    with pytest.raises(InputError) as err:
        load_user_config(f)
    for word in [str(f), *words]:
        assert word in str(err.value), (word, str(err.value))
    with pytest.raises(InputError, match="unknown model"):  # nothing of the file was added
        get_model("x" if "'x'" in words[0] else "cnn")
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("command", ["models", "extract", "align", "demo"])
@pytest.mark.parametrize(("text", "words"), MODELS_FILE_CASES, ids=_MODELS_IDS)
def test_models_file_bad_fields_cli(tmp_path, monkeypatch, capsys, fresh_registry, command, text, words):
    """Every command that reads models files refuses a bad one in one line naming the file, entry and field; code
    named by the file never runs without --trust-code."""
    f = tmp_path / "models.toml"
    f.write_text(text.format(marker=tmp_path / "pwned"))
    monkeypatch.chdir(tmp_path)
    args = {
        "models": ["models", "--no-check"],
        "extract": ["extract", "--models", "cnn", "--dataset", "openmoji", "--n", "4", "--device", "cpu"],
        "align": ["align", "--models", "cnn,minilm-l6", "--no-report"],
        "demo": ["demo", "--fast"],
    }[command]
    code, err = _cli(monkeypatch, capsys, *args, "--models-file", str(f))
    _assert_one_error_line(code, err, [str(f), *words])
    assert not (tmp_path / "pwned").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["models.toml"]  # nothing written


def test_prh_models_env_entries_naming_code_are_refused_too(tmp_path, monkeypatch, capsys, fresh_registry):
    f = tmp_path / "env.toml"
    f.write_text(_CODE.format(marker=tmp_path / "pwned"))
    monkeypatch.setenv("PRH_MODELS", str(f))
    code, err = _cli(monkeypatch, capsys, "models", "--no-check")
    _assert_one_error_line(code, err, [str(f), "module 'os'", "os:system", "refused", "--trust-code"])
    assert not (tmp_path / "pwned").exists()


def test_trust_code_opt_in_says_what_will_be_imported_in_one_line(
    tmp_path, monkeypatch, capsys, fresh_registry
):
    f = tmp_path / "models.toml"
    f.write_text(
        '[[model]]\nname = "cnn"\nsource = "cnn"\nadapter = "torch-module"\nmodality = "vision"\n'
        '[model.options]\nbuilder = "prh.models.tiny:tiny_cnn"\nbuilder_kwargs = { seed = 1 }\n'
    )
    code, err = _run(monkeypatch, capsys, "models", "--no-check", "--models-file", str(f), "--trust-code")
    assert code == 0, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: "), err
    for word in (str(f), "model 'cnn'", "module 'prh.models.tiny'", "tiny_cnn", "['seed']", "--trust-code"):
        assert word in lines[0], (word, lines[0])


@pytest.mark.parametrize(
    ("command", "after"),
    [
        (
            ["extract", "--models", "cnn", "--dataset", "no-such-dataset", "--device", "cpu"],
            "no-such-dataset",
        ),
        (["align", "--models", "cnn", "--dataset", "no-such-dataset", "--no-report"], "no-such-dataset"),
    ],
)
def test_trust_code_flag_reaches_every_command(tmp_path, monkeypatch, capsys, fresh_registry, command, after):
    """With --trust-code the file loads (one warning line) and the command goes on to its next step (here: an
    unknown dataset), which is the error; nothing was imported yet."""
    f = tmp_path / "models.toml"
    f.write_text(_CODE.format(marker=tmp_path / "pwned"))
    monkeypatch.chdir(tmp_path)
    code, err = _cli(monkeypatch, capsys, *command, "--models-file", str(f), "--trust-code")
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2 and len(lines) == 2 and "Traceback" not in err, err
    assert lines[0].startswith("warning: ") and "module 'os'" in lines[0] and "os:system" in lines[0]
    assert lines[1].startswith("error: ") and after in lines[1]
    assert not (tmp_path / "pwned").exists()


# ------------------------------------------------------------------------------------------ the store, align, report

N_STORED = 32


def _run(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Like :func:`_cli` for a command that may succeed: (exit status, 0 on success; stderr)."""
    from prh.cli import main

    monkeypatch.setattr(sys, "argv", ["prh", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0), capsys.readouterr().err
    return 0, capsys.readouterr().err


def _assert_one_error_line(code, err, words):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def _snapshot(folder) -> dict:
    from pathlib import Path

    folder = Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A folder dataset of 40 items, features of two models for its first 32 (one vision, one language), a models
    file naming them and a results folder of one alignment."""
    from PIL import Image

    from prh.data import load_dataset
    from prh.features.store import FeatureStore

    root = tmp_path_factory.mktemp("bad_store")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(40):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            fh.write(json.dumps({"file_name": f"img{i}.png", "text": f"item {i}"}) + "\n")
    dataset = load_dataset(str(data), n=N_STORED)
    models = root / "models.toml"
    models.write_text(
        f'[[model]]\nname = "bad-vis"\nsource = "{root / "vis"}"\nadapter = "hf-vision"\n'
        f'[[model]]\nname = "bad-lang"\nsource = "{root / "lang"}"\nadapter = "hf-causal-lm"\n'
    )
    store = FeatureStore(root / "store")
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(N_STORED, 8, generator=g)
    for name, pool, modality in (("bad-vis", "cls", "vision"), ("bad-lang", "mean", "language")):
        layers = [
            shared @ torch.randn(8, 12, generator=g) + torch.randn(N_STORED, 12, generator=g)
            for _ in range(3)
        ]
        store.save(dataset, name, pool, layers, ["layer0", "layer1", "layer2"], None, {"modality": modality})
    return {"root": root, "data": data, "models": models, "store": root / "store", "dataset": dataset}


@pytest.fixture
def work(base, tmp_path, monkeypatch, fresh_registry):
    """A private copy of the store (tests damage it) and the align arguments that use it."""
    import shutil

    store = tmp_path / "store"
    shutil.copytree(base["store"], store)
    monkeypatch.chdir(tmp_path)
    args = ["align", "--models", "bad-vis,bad-lang", "--dataset", str(base["data"]), "--n", str(N_STORED)]
    args += [
        "--store",
        str(store),
        "--models-file",
        str(base["models"]),
        "--metric",
        "mutual_knn",
        "--k",
        "3",
    ]
    args += ["--no-report"]
    lang = next(store.rglob("bad-lang__mean.safetensors"))
    return {"store": store, "args": args, "lang": lang, "out": tmp_path / "results"}


def _zero_region(w):
    data = bytearray(w["lang"].read_bytes())
    data[-600:-300] = bytes(300)
    w["lang"].write_bytes(bytes(data))


def _sidecar_edit(change):
    def edit(w):
        sidecar = w["lang"].with_suffix(".json")
        meta = json.loads(sidecar.read_text())
        change(meta)
        sidecar.write_text(json.dumps(meta))

    return edit


def _nan_layer(with_digests: bool):
    def edit(w):
        from safetensors import safe_open
        from safetensors.torch import save_file

        from prh.features.store import tensor_digests

        with safe_open(str(w["lang"]), framework="pt") as fh:
            tensors = {k: fh.get_tensor(k).clone() for k in fh.keys()}
            header = fh.metadata()
        tensors["layer.001"][4, 2] = float("nan")
        save_file(tensors, str(w["lang"]), metadata=header)
        sidecar = w["lang"].with_suffix(".json")
        meta = json.loads(sidecar.read_text())
        if with_digests:
            meta["sha256"] = tensor_digests(tensors)
        else:
            del meta["sha256"]
        sidecar.write_text(json.dumps(meta))

    return edit


def _drop_layer(meta):
    meta["layer_names"] = meta["layer_names"][:2]
    meta["layer_dims"] = meta["layer_dims"][:2]


STORE_CASES = [
    # (damage, words of the error besides the model and the file)
    (_zero_region, ["file corrupt", "do not match their sha256", "prh extract --force --models bad-lang"]),
    (_sidecar_edit(_drop_layer), ["file corrupt", "do not match the sidecar", "layer.002", "--force"]),
    (
        _sidecar_edit(lambda m: m.update(layer_dims=[12, 13, 12])),
        ["file corrupt", "layer 'layer1' has shape (32, 12) in the file but (32, 13) in the sidecar"],
    ),
    (_sidecar_edit(lambda m: m.update(layer_names="layer0")), ["file corrupt", "sidecar is malformed"]),
    (_nan_layer(with_digests=True), ["layer 'layer1'", "NaN/Inf", "--force"]),
    (_nan_layer(with_digests=False), ["layer 'layer1'", "NaN/Inf", "--force"]),
    (lambda w: w["lang"].write_bytes(b"not safetensors"), ["is corrupt", "not a readable safetensors file"]),
    (lambda w: w["lang"].with_suffix(".json").write_text("{not json"), ["sidecar", "is corrupt"]),
    (lambda w: w["lang"].with_suffix(".json").unlink(), ["has no sidecar"]),
    (lambda w: (w["lang"].unlink(), w["lang"].mkdir()), ["is a folder, not a file"]),
]
_STORE_IDS = [
    "zeroed-region",
    "layer-names",
    "dims",
    "malformed-sidecar",
    "nan",
    "nan-old-sidecar",
    "garbage-file",
    "garbage-sidecar",
    "no-sidecar",
    "folder-for-file",
]


@pytest.mark.filterwarnings("ignore::prh.errors.PrhWarning")
@pytest.mark.parametrize(("damage", "words"), STORE_CASES, ids=_STORE_IDS)
def test_damaged_store_entry_python_api(base, work, damage, words):
    from prh.errors import MissingFeaturesError
    from prh.features.store import FeatureStore

    damage(work)
    before = _snapshot(work["store"])
    with pytest.raises(MissingFeaturesError) as err:
        FeatureStore(work["store"]).load(base["dataset"], "bad-lang", "mean")
    for word in ["'bad-lang'", str(work["lang"]), *words]:
        assert word in str(err.value), (word, str(err.value))
    assert "\n" not in str(err.value)
    assert _snapshot(work["store"]) == before  # nothing in the store changed
    assert (
        FeatureStore(work["store"]).load(base["dataset"], "bad-vis", "cls").n == N_STORED
    )  # the other is fine


@pytest.mark.filterwarnings("ignore::prh.errors.PrhWarning")
@pytest.mark.parametrize(("damage", "words"), STORE_CASES, ids=_STORE_IDS)
def test_damaged_store_entry_cli(work, monkeypatch, capsys, damage, words):
    damage(work)
    before = _snapshot(work["store"])
    code, err = _cli(monkeypatch, capsys, *work["args"], "--out", str(work["out"]))
    err = "\n".join(line for line in err.splitlines() if not line.startswith("warning: "))
    _assert_one_error_line(code, err, ["'bad-lang'", str(work["lang"]), *words])
    assert _snapshot(work["store"]) == before
    assert not work["out"].exists()  # no half-written results


def test_old_store_entry_warns_once_and_aligns(work, monkeypatch, capsys):
    _sidecar_edit(lambda m: m.pop("sha256"))(work)
    code, err = _run(monkeypatch, capsys, *work["args"], "--out", str(work["out"]))
    assert code == 0, err
    warns = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warns) == 1 and str(work["lang"]) in warns[0] and "without checksums" in warns[0], err


def test_align_without_n_names_the_stored_n(work, monkeypatch, capsys):
    args = [a for a in work["args"] if a not in ("--n", str(N_STORED))]
    code, err = _cli(monkeypatch, capsys, *args, "--out", str(work["out"]))
    assert code == 2 and "Traceback" not in err
    first = err.splitlines()[0]
    assert first.startswith("error: ") and "for N=40" in first and "pass --n 32" in first, err
    assert not work["out"].exists()


@pytest.mark.parametrize("metric", [",", "", " , "])
def test_empty_metric_list_is_refused(work, monkeypatch, capsys, metric):
    args = list(work["args"])
    args[args.index("--metric") + 1] = metric
    code, err = _cli(monkeypatch, capsys, *args, "--out", str(work["out"]))
    _assert_one_error_line(code, err, ["--metric", "empty", "names no metric", "prh score --list"])
    assert not work["out"].exists()


def test_empty_metric_list_python_api():
    from prh.align import AlignConfig

    with pytest.raises(InputError, match="metrics is empty"):
        AlignConfig(metrics=",")


def _never_computed(monkeypatch):
    import prh.align

    def fail(*a, **k):
        raise AssertionError("the alignment ran although --out cannot be written")

    monkeypatch.setattr(prh.align, "run_alignment", fail)


def _read_only(monkeypatch):
    import errno

    import prh.atomic

    real_open = open

    def refuse(path, *args, **kwargs):
        if ".prh-write-probe" in str(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(prh.atomic, "open", refuse, raising=False)


def _full_disk(monkeypatch):
    import errno

    import prh.atomic

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(prh.atomic.os, "fsync", full)


@pytest.mark.parametrize(
    ("fault", "reason"), [(_read_only, "Read-only file system"), (_full_disk, "No space left on device")]
)
def test_unwritable_out_is_refused_before_computing(work, monkeypatch, capsys, fault, reason):
    previous = work["out"]
    previous.mkdir()
    (previous / "results.csv").write_text("a previous run\n")
    before = _snapshot(previous)
    fault(monkeypatch)
    _never_computed(monkeypatch)
    code, err = _cli(monkeypatch, capsys, *work["args"], "--out", str(previous))
    _assert_one_error_line(code, err, ["--out", str(previous), reason, "nothing was computed"])
    assert _snapshot(previous) == before


def test_unwritable_out_python_api(tmp_path, monkeypatch):
    from prh.atomic import check_writable

    _read_only(monkeypatch)
    with pytest.raises(InputError, match=r"--out .*new/sub cannot be written \(Read-only file system\)"):
        check_writable(tmp_path / "new" / "sub")
    assert sorted(tmp_path.iterdir()) == []  # the folders made for the probe are gone again


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_really_read_only_out(work, monkeypatch, capsys):
    out = work["out"]
    out.mkdir()
    out.chmod(0o555)
    try:
        _never_computed(monkeypatch)
        code, err = _cli(monkeypatch, capsys, *work["args"], "--out", str(out))
        _assert_one_error_line(code, err, ["--out", str(out), "nothing was computed"])
    finally:
        out.chmod(0o755)


def test_disk_full_after_compute_keeps_the_results(work, monkeypatch, capsys, tmp_path):
    """The write fails after the compute: the previous results stay as they were, the new ones go to a temporary
    folder that the one error line names."""
    import errno
    import tempfile

    import pandas as pd

    assert _run(monkeypatch, capsys, *work["args"], "--out", str(work["out"]))[0] == 0  # a previous run
    before = _snapshot(work["out"])
    spare = tmp_path / "spare"
    spare.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spare))
    real = pd.DataFrame.to_parquet

    def full(self, path, *args, **kwargs):
        if str(path).startswith(str(work["out"])):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", full)
    code, err = _cli(monkeypatch, capsys, *work["args"], "--out", str(work["out"]))
    err = "\n".join(  # the compute's progress bars and memory estimate
        line for line in err.splitlines() if "/s]" not in line and not line.startswith(("memory: ", "stage "))
    )
    _assert_one_error_line(code, err, ["--out", "No space left on device", "kept in", str(spare)])
    assert _snapshot(work["out"]) == before  # all files as they were, no temporary left
    from prh.align import Results

    (kept,) = list(spare.iterdir())
    assert str(kept) in err
    assert Results.load(kept).table.equals(Results.load(work["out"]).table)


def test_results_save_is_all_or_nothing(tmp_path, monkeypatch):
    import errno

    import pandas as pd

    from prh.align import Results

    table = pd.DataFrame({"model_x": ["a"], "score": [0.5]})
    Results(table, {"g": np.eye(2)}, {"run": 1}).save(tmp_path)
    before = _snapshot(tmp_path)

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("safetensors.numpy.save_file", full)  # the last file of the four
    with pytest.raises(OSError, match="No space"):
        Results(table.assign(score=0.9), {"g": np.eye(3)}, {"run": 2}).save(tmp_path)
    assert _snapshot(tmp_path) == before


def _results_damage(name: str, content):
    def damage(folder):
        path = folder / name
        if callable(content):
            content(path)
        else:
            path.write_bytes(content)

    return damage


def _other_parquet(path):
    import pandas as pd

    pd.DataFrame({"colour": ["red"]}).to_parquet(path)


def _text_scores(path):
    import pandas as pd

    table = pd.read_parquet(path)
    table["score"] = "high"
    table.to_parquet(path)


RESULTS_CASES = [
    (
        _results_damage("results.parquet", b"PAR1 garbage"),
        ["results.parquet", "not a readable results table"],
    ),
    (_results_damage("results.parquet", b""), ["results.parquet", "not a readable results table"]),
    (_results_damage("results.parquet", _other_parquet), ["results.parquet", "lacks the column(s)"]),
    (_results_damage("results.parquet", _text_scores), ["results.parquet", "'score' holds non-numbers"]),
    (_results_damage("provenance.json", b"{not json"), ["provenance.json", "not readable JSON"]),
    (_results_damage("provenance.json", b"[1, 2]"), ["provenance.json", "JSON object"]),
    (
        _results_damage("grids.safetensors", b"\x08\x00garbage"),
        ["grids.safetensors", "not a readable safetensors"],
    ),
]
_RESULTS_IDS = [
    "parquet-garbage",
    "parquet-empty",
    "parquet-other",
    "score-text",
    "json",
    "json-list",
    "grids",
]


@pytest.fixture(scope="module")
def results_dir(base, tmp_path_factory):
    from prh.align import AlignConfig, run_alignment
    from prh.features.store import FeatureStore
    from prh.models import load_user_config, reset_registry, resolve_models

    reset_registry()
    load_user_config(base["models"])
    out = tmp_path_factory.mktemp("results")
    specs = resolve_models("bad-vis,bad-lang")
    config = AlignConfig(metrics="mutual_knn", k=3)
    run_alignment(
        specs, None, FeatureStore(base["store"]), config, dataset=base["dataset"], progress=False
    ).save(out)
    reset_registry()
    return out


@pytest.mark.parametrize(("damage", "words"), RESULTS_CASES, ids=_RESULTS_IDS)
def test_corrupt_results_python_api(results_dir, tmp_path, damage, words):
    import shutil

    from prh.align import Results

    folder = tmp_path / "results"
    shutil.copytree(results_dir, folder)
    damage(folder)
    before = _snapshot(folder)
    with pytest.raises(InputError) as err:
        Results.load(folder)
    for word in [str(folder), *words]:
        assert word in str(err.value), (word, str(err.value))
    assert _snapshot(folder) == before


@pytest.mark.parametrize(("damage", "words"), RESULTS_CASES, ids=_RESULTS_IDS)
def test_corrupt_results_prh_report(results_dir, tmp_path, monkeypatch, capsys, damage, words):
    import shutil

    folder = tmp_path / "results"
    shutil.copytree(results_dir, folder)
    damage(folder)
    before = _snapshot(folder)
    code, err = _cli(monkeypatch, capsys, "report", str(folder))
    _assert_one_error_line(code, err, [str(folder), *words])
    assert _snapshot(folder) == before  # no figure or page half-written


# ------------------------------------------------------------------------------------------ the API boundary


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: torch.empty(24, 6, device="meta"), ["meta device"]),
        (lambda: np.array([["0.5"] * 6] * 24), ["<U3", "strings", "astype"]),
        (lambda: np.array([[b"x"] * 6] * 24), ["bytes"]),
        (lambda: np.array(["2020-01-01"] * 24, dtype="datetime64[D]").reshape(24, 1), ["dates"]),
    ],
    ids=["meta", "str", "bytes", "datetime"],
)
def test_features_without_values_or_numbers_are_refused(make, words):
    for call in (
        lambda a: prh.metrics.mutual_knn(a, _random(), k=3),
        lambda a: prh.sweep(a[:, None] if a.ndim == 2 else a, _random()[:, None], "cka"),
    ):
        with pytest.raises(InputError) as err:
            call(make())
        assert str(err.value).split()[0] in ("A", "X"), str(err.value)  # names the argument first
        for word in words:
            assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize(
    ("call", "words"),
    [
        (lambda a: prh.metrics.mutual_knn(a, a, kk=3), ["mutual_knn", "'kk'", "Did you mean 'k'"]),
        (lambda a: prh.metrics.cka(a, a, kernal="rbf"), ["cka", "'kernal'", "Did you mean 'kernel'"]),
        (lambda a: prh.metrics.get("cknna")(a, a, unbaised=True), ["cknna", "Did you mean 'unbiased'"]),
        (lambda a: prh.sweep(a[:, None], a[:, None], "mutual_knn", kk=3), ["mutual_knn", "Did you mean 'k'"]),
        (lambda a: prh.sweep(a[:, None], a[:, None], "rv", centre=False), ["rv", "Did you mean 'center'"]),
        (lambda a: prh.stats.calibrate(a, a, "mutual_knn", K=19, kk=3), ["mutual_knn", "'kk'"]),
    ],
    ids=["function", "function-cka", "get", "sweep", "sweep-rv", "calibrate"],
)
def test_a_misspelt_metric_keyword_is_named_with_a_suggestion(call, words):
    with pytest.raises(InputError) as err:
        call(_random())
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_keyword_checks_leave_the_numbers_alone():
    a, b = _random(seed=3), _random(seed=4)
    knn = prh.metrics.get("mutual_knn")
    assert knn is prh.metrics.mutual_knn and knn.__name__ == "mutual_knn"
    assert (
        knn(a, b, k=5)
        == knn(a, b, 5)
        == float(prh.sweep(a[:, None], b[:, None], "mutual_knn", k=5).scores[0, 0])
    )


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"models": 3}, ["models=3", "int", "comma-separated string"]),
        ({"models": ["a", 2]}, ["models=", "list of strings"]),
        ({"models": None}, ["models=None", "NoneType"]),
        ({"store": 5}, ["store=5", "int", "pathlib.Path"]),
        ({"store": ""}, ["store=''", "path"]),
        ({"n": 0}, ["n=0", "at least 1"]),
        ({"n": "10"}, ["n='10'", "integer"]),
        ({"device": 0}, ["device"]),
    ],
    ids=[
        "models-int",
        "models-mixed",
        "models-none",
        "store-int",
        "store-empty",
        "n-zero",
        "n-str",
        "device",
    ],
)
def test_alignment_arguments_of_the_wrong_type_are_named(kwargs, words):
    with pytest.raises(InputError) as err:
        prh.Alignment(**kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"neighbors": "approx"}, ["neighbors='approx'", "Did you mean 'approximate'"]),
        ({"neighbors": 1}, ["neighbors"]),
        ({"path": "kernel"}, ["path='kernel'", "gram", "features"]),
        ({"metrics": "cka", "neighbors": "approximate"}, ["neighbors='approximate'", "mutual_knn"]),
        ({"metrics": "mutual_knn,cknna", "path": "gram"}, ["path='gram'", "unbiased_cka"]),
    ],
)
def test_large_n_options_of_align_config_are_checked(kwargs, words):
    from prh.align import AlignConfig

    with pytest.raises(InputError) as err:
        AlignConfig(**kwargs)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


def test_large_n_options_reach_the_metrics_that_take_them():
    from prh.align import AlignConfig
    from prh.align.config import metric_options

    config = AlignConfig(neighbors="approximate", path="features")
    assert metric_options(config, "mutual_knn") == {"k": 10, "neighbors": "approximate"}
    assert metric_options(config, "cknna") == {"k": 10}
    assert metric_options(config, "unbiased_cka") == {"path": "features"}
    assert (
        metric_options(AlignConfig(), "unbiased_cka") == {}
    )  # defaults stay implicit: same params as before
    assert AlignConfig.from_dict(config.to_dict()) == config


def test_prh_score_string_arrays_are_one_line(tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "text.npy", np.array([["0.5"] * 4] * 20))
    np.save(tmp_path / "good.npy", np.random.default_rng(0).normal(size=(20, 4)).astype(np.float32))
    monkeypatch.chdir(tmp_path)
    code, err = _cli(monkeypatch, capsys, "score", "text.npy", "good.npy")
    _assert_one_error_line(code, err, ["strings", "numbers"])


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (["--neighbors", "approx"], ["neighbors='approx'", "approximate"]),
        (["--path", "kernel"], ["path='kernel'", "features"]),
        (["--path", "gram"], ["path='gram'", "applies to none of the metrics"]),
    ],
)
def test_prh_align_large_n_flags_are_checked(work, monkeypatch, capsys, extra, words):
    code, err = _cli(monkeypatch, capsys, *work["args"], *extra, "--out", str(work["out"]))
    _assert_one_error_line(code, err, words)
    assert not work["out"].exists()


@pytest.mark.filterwarnings("ignore::prh.errors.PrhWarning")
def test_prh_align_large_n_flags_give_the_same_numbers(work, monkeypatch, capsys):
    import pandas as pd

    pytest.importorskip("faiss")
    args = list(work["args"])
    args[args.index("--metric") + 1] = "mutual_knn,unbiased_cka"
    tables = {}
    for label, extra in {
        "default": [],
        "large": ["--neighbors", "approximate", "--path", "features"],
    }.items():
        out = work["out"] / label
        code, err = _run(monkeypatch, capsys, *args, *extra, "--out", str(out))
        assert code == 0, err
        (csv,) = out.rglob("results.csv")
        tables[label] = pd.read_csv(csv).sort_values(["metric", "model_x", "model_y", "control"])
    a, b = tables["default"], tables["large"]
    assert list(a["metric"]) == list(b["metric"]) and len(a) > 0
    np.testing.assert_allclose(
        a["score"].to_numpy(), b["score"].to_numpy(), rtol=0, atol=1e-6
    )  # float rounding


def _load_models(path):
    from prh.models import load_user_config

    load_user_config(path)


def _load_zoo(path):
    from prh.zoo.catalogue import load_catalogue

    load_catalogue(path)


@pytest.mark.parametrize("load", [_load_models, _load_zoo], ids=["models-file", "zoo-catalogue"])
@pytest.mark.parametrize(
    ("content", "words"),
    [
        (None, ["is a folder, not a file"]),
        ("missing", ["does not exist"]),
        (b'[[model]]\nname = "caf\xe9"\n', ["not UTF-8"]),
        (b"[[x]\n", ["not valid TOML"]),
        (b"colour = 'red'\n", ["unknown top-level key(s) ['colour']"]),
    ],
    ids=["folder", "missing", "latin-1", "syntax", "top-level"],
)
def test_catalogue_files_are_read_by_one_checked_loader(tmp_path, fresh_registry, load, content, words):
    path = tmp_path / "catalogue.toml"
    if content is None:
        path.mkdir()
    elif content != "missing":
        path.write_bytes(content)
    with pytest.raises(InputError) as err:
        load(path)
    for word in words:
        assert word in str(err.value), (word, str(err.value))


@pytest.mark.parametrize(
    ("load", "text", "words"),
    [
        (_load_models, "model = 3\n", ["`model` must be an array of tables ([[model]])", "int"]),
        (_load_models, "sets = [1]\n", ["`sets` must be a table ([sets])", "list"]),
        (_load_zoo, "entry = 'x'\n", ["`entry` must be an array of tables ([[entry]])", "str"]),
    ],
)
def test_catalogue_arrays_and_tables_of_the_wrong_kind(tmp_path, fresh_registry, load, text, words):
    path = tmp_path / "catalogue.toml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load(path)
    for word in words:
        assert word in str(err.value), (word, str(err.value))
