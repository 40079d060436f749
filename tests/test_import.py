"""`prh import` / prh.features.import_features: embeddings from elsewhere stored like extracted features.

Every format round-trips bit-exactly; rows are matched to items by id (shuffled rows give the same grid); malformed
inputs give one error line (API: InputError; CLI: exit 2) and store nothing; a simulated recording with repeats
gets the noise ceiling the simulation predicts; imported models run through `prh align --calibrate`, `prh report`
and prh.Alignment, and a models file with ``adapter = "imported"`` does the same declaratively."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.numpy import save_file

from prh.errors import InputError
from prh.features import ImportConfig, import_features
from prh.features.store import FeatureStore

N = 30


def _folder_dataset(root, n=N):
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            fh.write(
                json.dumps({"file_name": f"img{i}.png", "id": f"item-{i:03d}", "text": f"caption {i}"}) + "\n"
            )
    return data


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A folder dataset of N items and a shared latent structure three simulated 'models' see."""
    from prh.data import load_dataset

    root = tmp_path_factory.mktemp("import")
    data = _folder_dataset(root)
    ds = load_dataset(str(data))
    rng = np.random.default_rng(1)
    z = rng.standard_normal((N, 4))
    return {"root": root, "data": data, "ds": ds, "ids": list(ds.ids), "z": z, "rng": rng}


def _stored_tensors(path):
    with safe_open(str(path), framework="np") as fh:
        return {k: fh.get_tensor(k) for k in fh.keys()}


def _view(z, d, seed, noise=0.3, dtype=np.float32):
    rng = np.random.default_rng(seed)
    return (z @ rng.standard_normal((z.shape[1], d)) + noise * rng.standard_normal((z.shape[0], d))).astype(
        dtype
    )


# ----------------------------------------------------------------------------------------------- formats
def _write(fmt, path, arr, ids=None):
    if fmt == "npy":
        np.save(path, arr)
    elif fmt == "npz":
        extra = {"ids": np.array(ids, dtype=str)} if ids is not None else {}
        np.savez(path, feats=arr, **extra)
    elif fmt == "safetensors":
        save_file({"feats": arr}, str(path), metadata={"ids": json.dumps(ids)} if ids is not None else None)
    elif fmt in ("csv", "parquet"):
        frame = pd.DataFrame(arr, columns=[f"f{j}" for j in range(arr.shape[1])])
        if ids is not None:
            frame.insert(0, "id", ids)
        if fmt == "csv":
            frame.to_csv(path, index=False, float_format="%.17g")
        else:
            frame.to_parquet(path, index=False)
    elif fmt == "h5":
        import h5py

        with h5py.File(path, "w") as fh:
            fh.create_dataset("group/feats", data=arr)
            if ids is not None:
                fh.create_dataset("ids", data=np.array(ids, dtype="S"))


@pytest.mark.parametrize("fmt", ["npy", "npz", "safetensors", "csv", "parquet", "h5"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_each_format_round_trips_bit_exactly(world, tmp_path, fmt, dtype):
    arr = _view(world["z"], 7, seed=3, dtype=dtype)
    ids = None if fmt == "npy" else world["ids"]
    path = tmp_path / f"emb.{fmt}"
    _write(fmt, path, arr, ids)
    store = FeatureStore(tmp_path / "store")
    report = import_features("emb", path, world["ds"], store, ImportConfig(modality="language"))
    stored = _stored_tensors(report.path)["layer.000"]
    want = arr if fmt not in ("csv",) else arr.astype(np.float64)  # CSV text is read back as float64
    assert stored.dtype == want.dtype and np.array_equal(stored, want)
    assert report.matched_by == ("order" if ids is None else "ids") and report.n_found == N
    meta = store.meta(world["ds"], "emb", "mean")
    assert meta["adapter"] == "imported" and meta["modality"] == "language"
    import hashlib

    assert meta["source_files"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_multi_layer_npz_and_n_l_d_arrays(world, tmp_path):
    a, b = _view(world["z"], 5, 1), _view(world["z"], 9, 2)
    np.savez(tmp_path / "m.npz", ids=np.array(world["ids"], dtype=str), block1=a, block2=b)
    store = FeatureStore(tmp_path / "store")
    report = import_features("m", tmp_path / "m.npz", world["ds"], store, {"modality": "vision"})
    assert report.layer_names == ["block1", "block2"] and report.dims == [5, 9]
    t = _stored_tensors(report.path)
    assert np.array_equal(t["layer.000"], a) and np.array_equal(t["layer.001"], b)
    stacked = np.stack([a, a * 2], axis=1)  # (N, L, D)
    np.save(tmp_path / "s.npy", stacked)
    rep = import_features(
        "s", tmp_path / "s.npy", world["ds"], store, {"modality": "vision", "layer_names": "x,y"}
    )
    assert rep.layer_names == ["x", "y"]
    assert np.array_equal(_stored_tensors(rep.path)["layer.001"], a * 2)


def test_list_valued_column(world, tmp_path):
    arr = _view(world["z"], 4, 5, dtype=np.float64)
    frame = pd.DataFrame({"item": world["ids"], "embedding": [list(r) for r in arr]})
    frame.to_parquet(tmp_path / "e.parquet")
    frame.assign(embedding=[json.dumps([float(v) for v in r]) for r in arr]).to_csv(
        tmp_path / "e.csv", index=False
    )
    store = FeatureStore(tmp_path / "store")
    for suffix in ("parquet", "csv"):
        rep = import_features(
            f"e-{suffix}",
            tmp_path / f"e.{suffix}",
            world["ds"],
            store,
            {"modality": "language", "id_column": "item"},
        )
        assert np.array_equal(_stored_tensors(rep.path)["layer.000"], arr), suffix


# ----------------------------------------------------------------------------------------------- ids
def test_shuffled_rows_with_ids_give_the_same_features_and_grid(world, tmp_path):
    from prh.align import AlignConfig, run_alignment

    arr = _view(world["z"], 6, 7)
    perm = np.random.default_rng(0).permutation(N)
    ids = np.array(world["ids"])
    np.savez(tmp_path / "ordered.npz", ids=ids, feats=arr)
    np.savez(tmp_path / "shuffled.npz", ids=ids[perm], feats=arr[perm])
    np.save(tmp_path / "other.npy", _view(world["z"], 5, 8))
    store = FeatureStore(tmp_path / "store")
    import_features("ordered", tmp_path / "ordered.npz", world["ds"], store, {"modality": "vision"})
    import_features("shuffled", tmp_path / "shuffled.npz", world["ds"], store, {"modality": "vision"})
    import_features("other", tmp_path / "other.npy", world["ds"], store, {"modality": "language"})
    a = _stored_tensors(store.path(world["ds"], "ordered", "mean"))["layer.000"]
    b = _stored_tensors(store.path(world["ds"], "shuffled", "mean"))["layer.000"]
    assert np.array_equal(a, b)
    from prh.align import resolve_names as resolve

    specs = resolve("ordered,shuffled,other", store)
    res = run_alignment(
        specs,
        None,
        store,
        AlignConfig(metrics="mutual_knn,unbiased_cka", k=3),
        dataset=world["ds"],
        progress=False,
    )
    for metric in ("mutual_knn", "unbiased_cka"):
        assert np.array_equal(res.grid(metric, "ordered", "other"), res.grid(metric, "shuffled", "other"))


def test_subset_stores_the_intersection_and_the_grid_uses_shared_items(world, tmp_path):
    from prh.align import AlignConfig, run_alignment
    from prh.align import resolve_names as resolve

    keep = np.arange(N) % 3 != 0  # 20 of 30 items
    arr = _view(world["z"], 6, 9)
    ids = np.array(world["ids"])
    np.savez(tmp_path / "part.npz", ids=ids[keep], feats=arr[keep])
    np.save(tmp_path / "full.npy", _view(world["z"], 5, 10))
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(
        InputError, match=r"10 of the dataset's 30 items are not in the file .*--subset"
    ) as err:
        import_features("part", tmp_path / "part.npz", world["ds"], store, {"modality": "brain"})
    assert "\n" not in str(err.value) and store.meta(world["ds"], "part", "mean") is None
    rep = import_features(
        "part", tmp_path / "part.npz", world["ds"], store, {"modality": "brain", "subset": True}
    )
    assert rep.subset and rep.n_found == 20
    assert any("shared items" in line for line in rep.lines())
    import_features("full", tmp_path / "full.npy", world["ds"], store, {"modality": "vision"})
    res = run_alignment(
        resolve("part,full", store),
        None,
        store,
        AlignConfig(metrics="unbiased_cka"),
        dataset=world["ds"],
        progress=False,
    )
    assert res.provenance["N"] == 20 and set(res.table["N"]) == {20}
    assert res.provenance["models"]["part"]["items"] == {"n": N, "shared": 20}
    from prh import prepare
    from prh.metrics import unbiased_cka

    full = _view(world["z"], 5, 10)[keep]
    want = unbiased_cka(prepare(torch.from_numpy(arr[keep])), prepare(torch.from_numpy(full)))
    got = res.table[(res.table.model_x == "part") & (res.table.model_y == "full")]["score"].item()
    assert got == pytest.approx(want, abs=1e-6)


# ----------------------------------------------------------------------------------------------- errors
def _bad_files(world, tmp_path):
    ids = np.array(world["ids"])
    arr = _view(world["z"], 4, 11)
    nan = arr.copy()
    nan[5, 2] = np.nan
    out = {}
    np.savez(tmp_path / "dup.npz", ids=np.concatenate([ids[:-1], ids[:1]]), feats=arr)
    out["dup"] = (tmp_path / "dup.npz", {}, ["duplicate id", "item-000"])
    np.savez(tmp_path / "missing.npz", ids=ids[:-2], feats=arr[:-2])
    out["missing"] = (tmp_path / "missing.npz", {}, ["2 of the dataset's 30 items", "--subset"])
    np.save(tmp_path / "wrong_n.npy", arr[:-1])
    out["wrong_n"] = (tmp_path / "wrong_n.npy", {}, ["29 rows", "N=30", "--id-column"])
    np.save(tmp_path / "nan.npy", nan)
    out["nan"] = (tmp_path / "nan.npy", {}, ["NaN/Inf", "row 5", "column 2"])
    (tmp_path / "ragged.csv").write_text(
        "id,emb\n" + "".join(f'{i},"{json.dumps([1.0] * (3 if j else 4))}"\n' for j, i in enumerate(ids))
    )
    out["ragged"] = (tmp_path / "ragged.csv", {}, ["ragged rows", "row 1"])
    np.save(tmp_path / "rank.npy", arr[:, 0])
    out["rank"] = (tmp_path / "rank.npy", {}, ["rank 1", "(N, D)"])
    pd.DataFrame({"id": ids, "a": arr[:, 0], "b": ["x"] * N}).to_csv(tmp_path / "text.csv", index=False)
    out["non_numeric"] = (tmp_path / "text.csv", {}, ["not numeric", "'b'"])
    np.savez(tmp_path / "pickled.npz", ids=np.array(list(ids), dtype=object), feats=arr)
    out["pickled"] = (tmp_path / "pickled.npz", {}, ["never unpickles"])
    np.save(tmp_path / "rep.npy", arr)
    out["repeats_rank"] = (tmp_path / "rep.npy", {"repeats": True}, ["R >= 2"])
    (tmp_path / "x.txt").write_text("1 2 3")
    out["format"] = (tmp_path / "x.txt", {}, ["unknown format"])
    return out


def test_malformed_inputs_are_one_line_errors_and_store_nothing(world, tmp_path):
    store = FeatureStore(tmp_path / "store")
    for case, (path, options, words) in _bad_files(world, tmp_path).items():
        with pytest.raises(InputError) as err:
            import_features("bad", path, world["ds"], store, {"modality": "vision", **options})
        message = str(err.value)
        assert "\n" not in message, case
        for word in words:
            assert word in message, (case, word, message)
        assert store.entries() == [], case


def test_cli_errors_exit_2_with_one_line(world, tmp_path, monkeypatch, capsys):
    from prh.cli import main

    store = tmp_path / "store"
    for case, (path, options, words) in _bad_files(world, tmp_path).items():
        flags = ["--repeats"] if options.get("repeats") else []
        argv = ["prh", "import", "bad", str(path), "--modality", "vision", "--dataset", str(world["data"])]
        monkeypatch.setattr(sys, "argv", [*argv, "--store", str(store), *flags])
        with pytest.raises(SystemExit) as exc:
            main()
        err = capsys.readouterr().err
        assert exc.value.code == 2, (case, err)
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, (case, err)
        assert words[0] in lines[0], (case, lines[0])
    assert not any(store.rglob("*.safetensors")) if store.exists() else True


def test_name_of_a_registered_model_is_refused(world, tmp_path):
    np.save(tmp_path / "a.npy", _view(world["z"], 3, 1))
    with pytest.raises(InputError, match="registered"):
        import_features(
            "minilm-l6", tmp_path / "a.npy", world["ds"], FeatureStore(tmp_path / "s"), {"modality": "x"}
        )


# ----------------------------------------------------------------------------------------------- noise ceiling
def _recording(signal, repeats, sigma, rng):
    return signal[None] + sigma * rng.standard_normal((repeats, *signal.shape))


def test_noise_ceiling_of_a_simulated_recording_matches_the_simulation():
    """Planted structure S (N x D, rank 8) plus independent noise per repeat, R = 4. The ceiling estimates the score
    of two independent recordings of R repeats; the simulation gives that score directly (mean over 20 pairs of
    fresh recordings). A replication of the recording, scored against it, has a normalised score of ~1."""
    from prh import prepare
    from prh.metrics import cka
    from prh.stats import noise_ceiling, spearman_brown

    assert spearman_brown(0.5, 2) == pytest.approx(2 / 3)
    rng = np.random.default_rng(0)
    n, d, r, sigma = 120, 48, 4, 1.0
    signal = rng.standard_normal((n, 8)) @ rng.standard_normal((8, d))

    def score(a, b):
        return cka(prepare(torch.tensor(a.mean(0)).float()), prepare(torch.tensor(b.mean(0)).float()))

    truth = np.mean(
        [score(_recording(signal, r, sigma, rng), _recording(signal, r, sigma, rng)) for _ in range(20)]
    )
    rec = _recording(signal, r, sigma, rng)
    ceiling = noise_ceiling(torch.tensor(rec), "cka")
    assert ceiling.splits == 3 and ceiling.repeats == 4  # every distinct split of 4 repeats into 2 + 2
    assert ceiling.low <= ceiling.value <= ceiling.high
    assert ceiling.low - 0.002 <= truth <= ceiling.high + 0.002, (truth, ceiling)
    replication = _recording(signal, r, sigma, rng)
    assert ceiling.normalise(score(rec, replication)) == pytest.approx(1.0, abs=0.01)
    # control: a recording of pure noise (no shared structure) has a ceiling at chance, 0 for unbiased CKA
    null = noise_ceiling(torch.tensor(rng.standard_normal((r, n, d))), "unbiased_cka")
    assert abs(null.value) < 0.05


# ----------------------------------------------------------------------------------------------- end to end
def test_imported_models_run_through_align_calibrate_report_and_alignment(
    world, tmp_path, monkeypatch, capsys
):
    from import_cases import write_cases  # the files docs/import.md walks through
    from prh.cli import main

    data, z = world["data"], world["z"]
    store, out = tmp_path / "store", tmp_path / "results"
    cases = write_cases(tmp_path / "cases", world["ids"])

    def cli(*args):
        monkeypatch.setattr(sys, "argv", ["prh", *args])
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
        return capsys.readouterr().out

    base = ["--dataset", str(data), "--store", str(store)]
    printed = cli("import", "api-text", str(cases["api"]), "--modality", "language", *base)
    assert f"{N} of the dataset's {N} items found" in printed
    cli("import", "other-net", str(cases["framework"]), "--modality", "vision", "--family", "jax", *base)
    printed = cli("import", "my-brain", str(cases["recording"]), "--modality", "brain", "--repeats", *base)
    assert "trusting the row order" in printed and "noise ceiling (unbiased_cka)" in printed
    printed = cli(
        "align",
        "--models",
        "api-text,other-net,my-brain",
        "--metric",
        "mutual_knn,unbiased_cka",
        "--k",
        "3",
        "--calibrate",
        "19",
        "--shuffle-control",
        "--out",
        str(out),
        *base,
    )
    table = pd.read_csv(out / "results.csv")
    assert set(table.modality_x) | set(table.modality_y) == {"language", "vision", "brain"}
    cross = table[(table.control == "none") & (table.modality_x != table.modality_y)]
    assert len(cross) == 2 * 3 and cross.p_value.notna().all()
    controls = table[table.control != "none"]
    assert {tuple(sorted(p)) for p in zip(controls.modality_x, controls.modality_y)} == {
        ("language", "vision"),
        ("brain", "language"),
        ("brain", "vision"),
    }
    prov = json.loads((out / "provenance.json").read_text())
    assert set(prov["noise_ceilings"]["my-brain"]) == {"mutual_knn", "unbiased_cka"}
    cli("report", str(out))
    html = (out / "report.html").read_text()
    assert "noise ceilings" in html and "Noise ceiling of my-brain" in html

    import prh

    align = prh.Alignment(dataset=str(data), models=["api-text", "other-net", "my-brain"], store=str(store))
    assert align.models == ["api-text", "other-net", "my-brain"]
    scores = align.score(torch.from_numpy(_view(z, 5, 30)), metric="mutual_knn", topk=3)
    assert set(scores) == {"api-text", "other-net", "my-brain"}


def test_models_file_entry_imports_declaratively(world, tmp_path):
    from prh.align import AlignConfig, run_alignment
    from prh.align import resolve_names as resolve
    from prh.models import load_user_config
    from prh.models.registry import reset_registry

    ids = np.array(world["ids"])
    np.savez(tmp_path / "declared.npz", ids=ids, feats=_view(world["z"], 6, 40))
    np.save(tmp_path / "other.npy", _view(world["z"], 6, 41))
    (tmp_path / "models.toml").write_text(
        '[[model]]\nname = "declared"\nadapter = "imported"\npath = "declared.npz"\nmodality = "audio"\n'
        'family = "wav"\ncitation = "a test"\n'
    )
    store = FeatureStore(tmp_path / "store")
    import_features("other", tmp_path / "other.npy", world["ds"], store, {"modality": "vision"})
    try:
        load_user_config(tmp_path / "models.toml")
        specs = resolve("declared,other", store)
        assert specs[0].adapter == "imported" and specs[0].modality == "audio"
        res = run_alignment(
            specs, None, store, AlignConfig(metrics="unbiased_cka"), dataset=world["ds"], progress=False
        )
        assert store.meta(world["ds"], "declared", "mean")["citation"] == "a test"
        assert set(res.table.modality_x) | set(res.table.modality_y) == {"audio", "vision"}
    finally:
        reset_registry()


def test_alignment_scores_on_the_shared_items_of_an_imported_subset(world, tmp_path):
    import prh
    from prh.metrics import mutual_knn

    keep = np.arange(N) % 4 != 1
    arr = _view(world["z"], 6, 50)
    ids = np.array(world["ids"])
    np.savez(tmp_path / "part.npz", ids=ids[keep], feats=arr[keep])
    store = tmp_path / "store"
    import_features(
        "part", tmp_path / "part.npz", world["ds"], FeatureStore(store), {"modality": "brain", "subset": True}
    )
    align = prh.Alignment(dataset=str(world["data"]), models="part", store=str(store))
    assert align.n == N and int(align.item_mask.sum()) == int(keep.sum())
    mine = _view(world["z"], 5, 51)
    score = align.score(torch.from_numpy(mine), metric="mutual_knn", topk=3)["part"].score
    want = mutual_knn(prepare_t(mine[keep]), prepare_t(arr[keep]), k=3)
    assert score == pytest.approx(want, abs=1e-6)
    with pytest.raises(InputError, match="N=30"):
        align.score(torch.from_numpy(mine[:10]), metric="mutual_knn", topk=3)


def prepare_t(a):
    from prh import prepare

    return prepare(torch.from_numpy(np.ascontiguousarray(a)))


def test_prh_extract_imports_a_declared_entry(world, tmp_path, monkeypatch, capsys):
    from prh.cli import main
    from prh.models.registry import reset_registry

    np.savez(tmp_path / "d.npz", ids=np.array(world["ids"]), feats=_view(world["z"], 4, 60))
    (tmp_path / "m.toml").write_text(
        '[[model]]\nname = "decl"\nadapter = "imported"\npath = "d.npz"\nmodality = "brain"\n'
    )
    argv = ["prh", "extract", "--models", "decl", "--models-file", str(tmp_path / "m.toml"), "--dataset"]
    monkeypatch.setattr(
        sys, "argv", [*argv, str(world["data"]), "--store", str(tmp_path / "s"), "--no-progress"]
    )
    try:
        try:
            main()
        except SystemExit as exc:
            assert exc.code in (0, None), capsys.readouterr().err
    finally:
        reset_registry()
    meta = FeatureStore(tmp_path / "s").meta(world["ds"], "decl", "mean")
    assert meta is not None and meta["adapter"] == "imported" and meta["modality"] == "brain"


def test_several_files_are_layers_or_repeats_and_keys_pick_arrays(world, tmp_path):
    a, b = _view(world["z"], 4, 70), _view(world["z"], 6, 71)
    np.save(tmp_path / "early.npy", a)
    np.save(tmp_path / "late.npy", b)
    store = FeatureStore(tmp_path / "store")
    rep = import_features(
        "two", [tmp_path / "early.npy", tmp_path / "late.npy"], world["ds"], store, {"modality": "x"}
    )
    assert rep.layer_names == ["early", "late"] and rep.dims == [4, 6]
    c = _view(world["z"], 4, 72)
    np.save(tmp_path / "c.npy", c)
    files = [tmp_path / "early.npy", tmp_path / "c.npy"]
    rep = import_features("rep", files, world["ds"], store, {"modality": "brain", "repeats": True})
    stored = _stored_tensors(rep.path)
    assert rep.repeats == 2 and np.array_equal(stored["repeat.001"], c)
    assert np.allclose(stored["layer.000"], (a + c) / 2)
    np.savez(tmp_path / "k.npz", ids=np.array(world["ids"]), x=a, y=b, z=a)
    rep = import_features("k", tmp_path / "k.npz", world["ds"], store, {"modality": "x", "keys": "y,x"})
    assert rep.layer_names == ["y", "x"] and np.array_equal(_stored_tensors(rep.path)["layer.000"], b)
    with pytest.raises(InputError, match=r"no arrays named \['w'\]"):
        import_features("k2", tmp_path / "k.npz", world["ds"], store, {"modality": "x", "keys": "w"})


def test_ray_backend_refuses_imported_subsets_before_starting(world, tmp_path):
    from prh.align import AlignConfig
    from prh.align import resolve_names as resolve
    from prh.distributed import align_ray

    keep = np.arange(N) % 2 == 0
    np.savez(tmp_path / "half.npz", ids=np.array(world["ids"])[keep], feats=_view(world["z"], 4, 80)[keep])
    np.save(tmp_path / "all.npy", _view(world["z"], 4, 81))
    store = FeatureStore(tmp_path / "store")
    import_features("half", tmp_path / "half.npz", world["ds"], store, {"modality": "brain", "subset": True})
    import_features("all", tmp_path / "all.npy", world["ds"], store, {"modality": "vision"})
    with pytest.raises(InputError, match=r"\['half'\] were imported with --subset.*--backend local"):
        align_ray(
            resolve("half,all", store), None, store, AlignConfig(metrics="unbiased_cka"), dataset=world["ds"]
        )
