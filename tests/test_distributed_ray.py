"""The Ray backend on a local Ray (2 CPUs, no dashboard) with tiny models saved to disk and a folder dataset:
parallel extraction equals the local backend, a killed worker is retried without losing anything, transient
errors are retried and user errors are not, the tiled alignment grid equals the local one, and the CLI dispatches
to Ray. Pure helpers (tiling, resource estimates, the missing-Ray error) are tested without starting Ray."""

from __future__ import annotations

import json
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from prh.align import AlignConfig, ModelFeatures, PairGrid
from prh.distributed import RayOptions, align_ray, estimate_extract_resources, extract_ray, plan_tiles
from prh.distributed.resources import GIB, NodeLimits
from prh.errors import InputError, ModelLoadError
from prh.features import ExtractConfig, extract
from prh.features.store import FeatureStore
from prh.models import ModelSpec, reset_registry
from prh.models.tiny import tiny_causal_lm, tiny_tokenizer, tiny_vit

N = 16
CNN_LAYERS = ["stem", "blocks.0", "blocks.1"]

FAULTS = '''
"""Builders that fail on their first call (the call count is kept in a log file): for the retry tests."""
import os
from pathlib import Path

from prh.models.tiny import tiny_cnn


def flaky(log, mode, seed=0):
    path = Path(log)
    calls = len(path.read_text().splitlines()) if path.exists() else 0
    with path.open("a") as fh:
        fh.write(f"{os.getpid()}\\n")
    if mode == "kill" and calls == 0:
        os.kill(os.getpid(), 9)  # the worker process dies, as if OOM-killed or its node were lost
    if mode == "transient" and calls == 0:
        raise ConnectionError("simulated network blip")
    if mode == "user":
        raise ValueError("simulated user error")
    return tiny_cnn(seed=seed)
'''


def _cnn(name, seed=0, **options):
    return ModelSpec(
        name=name,
        source="builder",
        adapter="torch-module",
        modality="vision",
        pool="mean",
        params=1000,
        options={"layers": CNN_LAYERS, "image_size": 32, **options},
    )


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    tok = tiny_tokenizer()
    tiny_causal_lm("gpt2").save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    tiny_vit(seed=0).save_pretrained(root / "vit")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "apple", "dog", "cat", "rocket", "face", "tree", "house"]
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(N):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            fh.write(
                json.dumps({"file_name": f"img{i}.png", "text": " ".join(rng.choice(words, 2 + i % 3))})
                + "\n"
            )
    faults = root / "faultmods"
    faults.mkdir()
    (faults / "prh_ray_faults.py").write_text(textwrap.dedent(FAULTS))
    specs = [
        ModelSpec(name="tiny-lm", source=str(root / "lm"), adapter="hf-causal-lm", modality="language"),
        ModelSpec(
            name="tiny-vit", source=str(root / "vit"), adapter="hf-vision", modality="vision", pool="cls"
        ),
        _cnn("tiny-cnn", builder="prh.models.tiny:tiny_cnn", builder_kwargs={"seed": 3}),
    ]
    from prh.data import load_dataset

    return {"root": root, "data": data, "faults": faults, "specs": specs, "ds": load_dataset(str(data), n=N)}


@pytest.fixture(scope="module")
def ray_local(workspace):
    ray = pytest.importorskip("ray")
    sys.path.insert(0, str(workspace["faults"]))
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        logging_level="error",
        runtime_env={"env_vars": {"PYTHONPATH": str(workspace["faults"])}},
    )
    yield ray
    ray.shutdown()
    sys.path.remove(str(workspace["faults"]))


@pytest.fixture(scope="module")
def extracted(workspace, ray_local):
    store = FeatureStore(workspace["root"] / "store-ray")
    rows = extract_ray(
        workspace["specs"], workspace["ds"], store, ExtractConfig(device="cpu", batch_size=8), progress=False
    )
    return store, rows


def _same_features(a: FeatureStore, b: FeatureStore, ds, spec, pool):
    fa, fb = a.load(ds, spec.name, pool), b.load(ds, spec.name, pool)
    assert fa.layer_names == fb.layer_names and len(fa.layers) == len(fb.layers) > 0
    for la, lb in zip(fa.layers, fb.layers):
        assert la.shape == lb.shape == (N, la.shape[1])
        torch.testing.assert_close(la, lb, rtol=0, atol=1e-6)
    assert sorted(fa.per_sample) == sorted(fb.per_sample)
    for key in fa.per_sample:
        torch.testing.assert_close(fa.per_sample[key], fb.per_sample[key], rtol=0, atol=1e-6)


def test_three_models_in_parallel_equal_local_and_are_not_recomputed(workspace, extracted):
    store, rows = extracted
    ds, specs = workspace["ds"], workspace["specs"]
    assert [r["model"] for r in rows] == [s.name for s in specs]
    assert [r["status"] for r in rows] == ["extracted"] * 3, rows
    local_store = FeatureStore(workspace["root"] / "store-local")
    local = extract(specs, ds, local_store, ExtractConfig(device="cpu", batch_size=8), progress=False)
    assert set(local[0]) <= set(rows[0]) and "node" in rows[0]  # the local summary columns, plus the node
    for spec, row, lrow in zip(specs, rows, local):
        assert (row["pool"], row["layers"], row["dim"]) == (lrow["pool"], lrow["layers"], lrow["dim"])
        _same_features(store, local_store, ds, spec, row["pool"])
    assert rows[0]["bpb"] == pytest.approx(local[0]["bpb"], abs=1e-6)  # the causal LM's bits per byte
    # a second run recomputes nothing: every model is reported as cached and the files are untouched
    ids = {e["model"]: e["write_id"] for e in store.entries()}
    again = extract_ray(specs, ds, store, ExtractConfig(device="cpu"), progress=False)
    assert [r["status"] for r in again] == ["cached"] * 3
    assert {e["model"]: e["write_id"] for e in store.entries()} == ids


def test_killed_worker_and_transient_error_are_retried_user_error_is_not(workspace, ray_local, tmp_path):
    ds = workspace["ds"]
    logs = {mode: tmp_path / f"{mode}.log" for mode in ("kill", "transient", "user")}
    specs = [
        _cnn(
            f"flaky-{mode}",
            builder="prh_ray_faults:flaky",
            builder_kwargs={"log": str(path), "mode": mode, "seed": 1},
        )
        for mode, path in logs.items()
    ]
    store = FeatureStore(tmp_path / "store")
    rows = extract_ray(
        specs, ds, store, ExtractConfig(device="cpu"), progress=False, ray=RayOptions(max_retries=2)
    )
    rows = {r["model"]: r for r in rows}
    calls = {mode: path.read_text().split() for mode, path in logs.items()}
    # the killed worker: a second process ran the retry and the features are stored
    assert rows["flaky-kill"]["status"] == "extracted", rows["flaky-kill"]
    assert len(calls["kill"]) == 2 and calls["kill"][0] != calls["kill"][1]
    assert rows["flaky-transient"]["status"] == "extracted" and len(calls["transient"]) == 2
    # a user error fails at once (one call, no retry) and does not stop the others
    assert rows["flaky-user"]["status"] == "failed" and len(calls["user"]) == 1
    assert "simulated user error" in rows["flaky-user"]["error"]
    assert {e["model"] for e in store.entries()} == {"flaky-kill", "flaky-transient"}
    local_store = FeatureStore(
        tmp_path / "local"
    )  # the builders no longer fail: the same model, extracted here
    extract(specs[:1], ds, local_store, ExtractConfig(device="cpu"), progress=False)
    _same_features(store, local_store, ds, specs[0], "mean")


@pytest.mark.parametrize("square", [True, False])
def test_tiled_alignment_equals_local(workspace, extracted, square):
    from prh.align import run_alignment

    store, _ = extracted
    specs, ds = workspace["specs"], workspace["ds"]
    xs, ys = (specs, None) if square else (specs[:1], specs[1:])
    config = AlignConfig(
        metrics=["mutual_knn", "cknna", "unbiased_cka"],
        k=3,
        calibrate=19 if square else 0,
        shuffle_control=True,
    )
    local = run_alignment(xs, ys, store, config, dataset=ds, progress=False)
    # block 2 over 3 models: diagonal tiles, one above the diagonal and one below (cknna is not symmetric)
    remote = align_ray(
        xs, ys, store, config, dataset=ds, progress=False, ray=RayOptions(block_size=2 if square else 1)
    )
    assert remote.provenance["backend"]["tasks"] == (4 if square else 2)
    assert len(local.table) == (21 + 8 if square else 6 + 6)  # incl. the shuffled-caption controls
    pd.testing.assert_frame_equal(remote.table, local.table, check_exact=False, rtol=0, atol=1e-6)
    assert list(remote.grids) == list(local.grids)
    for key, grid in local.grids.items():
        np.testing.assert_allclose(remote.grids[key], grid, rtol=0, atol=1e-6)
    assert remote.provenance["models"] == local.provenance["models"]
    if square:  # with a cache folder each tile's results are kept: a second run reads them back, equal
        cache = workspace["root"] / "tile-cache"
        first = align_ray(
            xs, ys, store, config, dataset=ds, progress=False, cache_dir=cache, ray=RayOptions(block_size=2)
        )
        assert len(list(cache.iterdir())) == 4
        second = align_ray(
            xs, ys, store, config, dataset=ds, progress=False, cache_dir=cache, ray=RayOptions(block_size=2)
        )
        pd.testing.assert_frame_equal(first.table, local.table, check_exact=False, rtol=0, atol=1e-6)
        pd.testing.assert_frame_equal(second.table, first.table)
        assert list(second.grids) == list(local.grids)


def test_cli_backend_ray(workspace, extracted, tmp_path, request):
    from typer.testing import CliRunner

    from prh.cli import app

    store, _ = extracted
    models = tmp_path / "models.toml"
    models.write_text(
        "".join(
            f'[[model]]\nname = "{name}"\nsource = "{workspace["root"] / "vit"}"\nadapter = "hf-vision"\npool = "cls"\n'
            for name in ("cli-vit", "tiny-vit")
        )
    )
    request.addfinalizer(reset_registry)  # forget the TOML's models afterwards
    runner = CliRunner()
    args = [
        "--dataset",
        str(workspace["data"]),
        "--n",
        str(N),
        "--models-file",
        str(models),
        "--backend",
        "ray",
    ]
    res = runner.invoke(
        app,
        [
            "extract",
            "--models",
            "cli-vit",
            "--store",
            str(store.root),
            "--device",
            "cpu",
            "--no-progress",
            *args,
        ],
    )
    assert res.exit_code == 0, res.output
    assert "extracted" in res.output
    res = runner.invoke(
        app,
        ["align", "--models", "cli-vit,tiny-vit", "--store", str(store.root), "--out", str(tmp_path / "res")]
        + ["--metric", "mutual_knn", "--k", "3", "--no-report", *args],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(tmp_path / "res" / "results.csv")
    same = table[(table["model_x"] == "cli-vit") & (table["model_y"] == "tiny-vit")]
    assert same["score"].iloc[0] == pytest.approx(
        1.0
    )  # the same weights extracted twice: identical kNN graphs


# -- pure helpers (no Ray started) -----------------------------------------------------------------------------


@pytest.mark.parametrize("n_models,block", [(1, 1), (5, 2), (4, 4), (7, 3)])
def test_tiles_cover_every_pair_of_the_experiment_exactly_once(n_models, block):
    stubs = [ModelFeatures(f"m{i}", [], {"modality": "vision"}) for i in range(n_models)]
    names = [m.name for m in stubs]
    metrics = ["mutual_knn", "cknna"]  # symmetric and not
    for ys in (None, names[: max(1, n_models // 2)]):
        config = AlignConfig(metrics=metrics)
        exp = PairGrid(stubs, [s for s in stubs if s.name in ys] if ys else None, config)
        want = sorted((m, x.name, y.name) for m in metrics for x, y in exp.pairs(m))
        got = []
        for a, b, tile_metrics in plan_tiles(names, ys, metrics, block):
            sub = PairGrid(
                [s for s in stubs if s.name in a], [s for s in stubs if s.name in b] if b else None, config
            )
            got += [(m, x.name, y.name) for m in tile_metrics for x, y in sub.pairs(m)]
        assert sorted(got) == want


def test_resource_estimates():
    gpu_node = NodeLimits(cpus=16, gpus=8, memory=500 * GIB)
    tiny = ModelSpec(name="t", source="nowhere", adapter="hf-vision", modality="vision", params=1000)
    res = estimate_extract_resources(tiny, device="auto", limits=gpu_node)
    assert (res.num_gpus, res.device, res.num_cpus) == (0.0, "cpu", 1.0)  # too small to hold a GPU
    big = ModelSpec(
        name="b", source="nowhere", adapter="hf-causal-lm", modality="language", params=7_000_000_000
    )
    res = estimate_extract_resources(big, device="auto", dtype="bfloat16", limits=gpu_node)
    assert (res.num_gpus, res.device) == (1.0, "cuda")
    assert res.memory == int(GIB + 1.5 * 7e9 * 2)  # base + overhead x params x bytes per parameter
    huge = ModelSpec(
        name="h", source="nowhere", adapter="hf-causal-lm", modality="language", params=70_000_000_000
    )
    res = estimate_extract_resources(
        huge, device="cuda", dtype="bfloat16", device_map="auto", limits=gpu_node
    )
    assert res.num_gpus == 2.0  # ceil(1.2 * 140e9 B / 80 GiB)
    small_node = NodeLimits(cpus=2, gpus=1, memory=16 * GIB)
    res = estimate_extract_resources(
        huge, device="cuda", dtype="bfloat16", device_map="auto", limits=small_node
    )
    assert (
        res.num_gpus == 1.0 and res.memory == 16 * GIB and len(res.notes) == 2
    )  # capped to stay schedulable
    assert estimate_extract_resources(big, device="auto", limits=NodeLimits(2, 0, 16 * GIB)).device == "cpu"
    with pytest.raises(InputError, match="no node of the Ray cluster has one"):
        estimate_extract_resources(big, device="cuda", limits=NodeLimits(2, 0, 16 * GIB))


def test_missing_ray_says_how_to_install(monkeypatch):
    from prh.distributed import require_ray

    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ModelLoadError, match=r"pip install 'prh\[ray\]'"):
        require_ray()


def test_missing_features_are_reported_on_the_driver_before_any_task(workspace, tmp_path):
    from prh.errors import MissingFeaturesError

    empty = FeatureStore(tmp_path / "empty")
    with pytest.raises(MissingFeaturesError, match=r"features of 3 model\(s\) are missing(.|\n)*prh extract"):
        align_ray(workspace["specs"], None, empty, dataset=workspace["ds"], progress=False)
    with pytest.raises(InputError, match="unknown option"):
        align_ray(workspace["specs"], None, empty, {"not_an_option": 1}, dataset=workspace["ds"])
