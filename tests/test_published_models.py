"""The paper's published features as models: small files of the published format (float16 and float32 (N, L, D)
tensors, a list of layers) served on 127.0.0.1, fetched into a store, then scored with `prh align --models
published` -- equal to the literal re-implementation of the reference loop on every pair, the streamed grid equal
to the all-in-memory one bit for bit, memory refusal, missing files, another dataset refused."""

from __future__ import annotations

import hashlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import reference_alignment
import reference_impl
from prh.align import AlignConfig, PairGrid, load_features, run_alignment, shuffled_control
from prh.align import resolve_names as resolve
from prh.align._loading import threshold
from prh.cli import app, main
from prh.errors import InputError, MissingFeaturesError
from prh.features.download import DownloadOptions
from prh.features.reference import ENV_CATALOGUE, ENV_URL, FetchConfig, fetch_reference, load_catalogue
from prh.features.store import FeatureStore
from test_reference_features import FileServer

N = 48
FAST = DownloadOptions(timeout=5.0, retries=0, backoff=0.0, progress=False, chunk_size=1 << 16)
DATASET = "minhuh/prh@wit_1024"


def _saved(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _layers(dims: list[int], noise: list[float], seed: int) -> list[torch.Tensor]:
    """Layers that all see one shared latent through their own random map, plus layer-specific noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(N, 8, generator=torch.Generator().manual_seed(0))
    return [
        z @ torch.randn(8, d, generator=g) + s * torch.randn(N, d, generator=g) for d, s in zip(dims, noise)
    ]


def _tensor_file(dims, noise, seed, dtype=torch.float32, **fields) -> bytes:
    feats = torch.stack(_layers(dims, noise, seed), dim=1).to(dtype)
    feats[1, 0, 0] = 30.0  # an outlier for the clamp
    return _saved({"feats": feats, **fields})


def _list_file(dims, noise, seed, **fields) -> bytes:
    layers = _layers(dims, noise, seed)
    layers[-1][2, 1] = -20.0
    return _saved({"feats": layers, **fields})


#: name -> (file bytes, modality, family, verified): two float16 LMs, one float32 LM, three vision models
FILES = {
    "bloom_s": (
        _tensor_file(
            [24] * 3, [2.0, 0.6, 1.4], 1, torch.float16, num_params=560_000_000, bpb=torch.tensor(1.1)
        ),
        "language",
        "BLOOMZ",
    ),
    "bloom_m": (
        _tensor_file([32] * 4, [1.5, 0.4, 0.9, 2.0], 2, torch.float16, num_params=1_700_000_000, bpb=0.95),
        "language",
        "BLOOMZ",
    ),
    "llama_s": (
        _list_file([16, 28, 20], [1.0, 0.3, 0.8], 3, num_params=7_000_000_000, bpb=0.8),
        "language",
        "LLaMA",
    ),
    "dino_s": (_tensor_file([20] * 4, [2.5, 1.0, 0.5, 1.5], 4, num_params=22_000_000), "vision", "DINOv2"),
    "dino_b": (_list_file([16, 36, 24], [1.2, 0.6, 0.9], 5, num_params=86_000_000), "vision", "DINOv2"),
    "clip_b": (_tensor_file([18] * 3, [0.7, 1.8, 1.0], 6, num_params=88_000_000), "vision", "CLIP"),
}
UNVERIFIED = "clip_b"  # not in the `published` selection ("verified") of the test catalogue
LANGUAGE = ["bloom_s", "bloom_m", "llama_s"]
VISION = ["dino_s", "dino_b"]


def _catalogue(path: Path, url: str) -> Path:
    lines = [
        f'base_url = "{url}"',
        'published = "verified"',
        "[dataset]",
        'repo = "minhuh/prh"',
        'revision = "wit_1024"',
        f"n = {N}",
        'fingerprint = ""',
    ]
    for name, (data, modality, family) in FILES.items():
        pool = "avg" if modality == "language" else "none"
        lines += [
            "[[feature]]",
            f'name = "{name}"',
            f'file = "{name}.pt"',
            f'model = "test/{name}"',
            f'modality = "{modality}"',
            f'family = "{family}"',
            f'pool = "{pool}"',
            f"listed = {json.dumps(name != 'bloom_m')}",
        ]
        if name == UNVERIFIED:
            lines.append("verified = false")
        else:
            lines += [
                f"size = {len(data)}",
                f'sha256 = "{hashlib.sha256(data).hexdigest()}"',
                "verified = true",
            ]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def fetched(tmp_path_factory):
    """Every test file served on 127.0.0.1, fetched through fetch_reference into one store; the raw files too."""
    tmp = tmp_path_factory.mktemp("published")
    server = FileServer({f"{name}.pt": data for name, (data, _, _) in FILES.items()})
    catalogue = _catalogue(tmp / "catalogue.toml", server.url)
    mp = pytest.MonkeyPatch()
    mp.setenv(ENV_CATALOGUE, str(catalogue))
    mp.delenv(ENV_URL, raising=False)
    try:
        fetch_reference("all", tmp / "store", FetchConfig(download=FAST))
        for name, (data, _, _) in FILES.items():
            (tmp / f"{name}.pt").write_bytes(data)
        yield {"store": FeatureStore(tmp / "store"), "tmp": tmp, "catalogue": catalogue}
    finally:
        server.stop()
        mp.undo()


@pytest.fixture
def catalogue_env(fetched, monkeypatch):
    monkeypatch.setenv(ENV_CATALOGUE, str(fetched["catalogue"]))
    return fetched


def _short(model: str) -> str:
    return model.removeprefix("published/")


# ---------------------------------------------------------------------------------------------------------------
def test_the_published_sets_follow_the_catalogue(catalogue_env):
    names = [s.name for s in resolve("published")]
    assert names == [f"published/{n}" for n in FILES if n != UNVERIFIED]
    assert [s.name for s in resolve("published-language")] == [f"published/{n}" for n in LANGUAGE]
    assert [s.name for s in resolve("published-vision")] == [f"published/{n}" for n in VISION]
    assert [_short(s.name) for s in resolve("platonic")] == [n for n in FILES if n != "bloom_m"]
    specs = {_short(s.name): s for s in resolve("published,published/clip_b")}
    assert specs["clip_b"].family == "CLIP" and specs["dino_b"].family == "DINOv2"
    assert specs["bloom_s"].modality == "language" and specs["dino_s"].modality == "vision"
    with pytest.raises(InputError, match="not a published feature file"):
        resolve("published/nope")


def test_builtin_published_set_is_the_29_verified_files_with_families(monkeypatch):
    monkeypatch.delenv(ENV_CATALOGUE, raising=False)
    specs = resolve("published")
    assert len(specs) == 29
    assert sum(s.modality == "language" for s in specs) == 12
    assert {s.family for s in specs} == {
        "DINOv2",
        "CLIP",
        "CLIP-ft",
        "ImageNet-21k",
        "MAE",
        "BLOOMZ",
        "OpenLLaMA",
        "LLaMA",
    }
    assert len(resolve("published-vision")) == 17 and len(resolve("platonic")) == 26


def test_float16_threshold_is_the_exact_quantile():
    g = torch.Generator().manual_seed(0)
    layers = [(torch.randn(50, d, generator=g) * 3).to(torch.float16) for d in (7, 13)]
    layers[0][0, :3] = torch.tensor([-0.0, 0.0, -65504.0], dtype=torch.float16)
    flat = torch.cat([x.float().reshape(-1).abs() for x in layers])
    for q in (0.5, 0.95, 0.999, 1.0):
        rank = min(int(q * flat.numel()), flat.numel() - 1)
        assert threshold(layers, q) == float(flat.sort().values[rank])


@pytest.mark.parametrize("metric,kw", [("mutual_knn", {"k": 10}), ("unbiased_cka", {}), ("cknna", {"k": 10})])
def test_align_published_equals_the_reference_loop_on_every_pair(catalogue_env, metric, kw):
    store = catalogue_env["store"]
    results = run_alignment(
        resolve("published-language"),
        resolve("published-vision"),
        store,
        AlignConfig(metrics=metric),
        progress=False,
    )
    table = results.table
    assert len(table) == len(LANGUAGE) * len(VISION)
    prepared = {
        name: reference_alignment.prepare_features(
            reference_alignment.load_features(catalogue_env["tmp"] / f"{name}.pt")
        )
        for name in LANGUAGE + VISION
    }

    def layers(feats):
        return [feats[:, i] for i in range(feats.shape[1])] if isinstance(feats, torch.Tensor) else feats

    for _, row in table.iterrows():
        x, y = _short(row["model_x"]), _short(row["model_y"])
        grid, best, pair = reference_impl.compute_score(
            layers(prepared[x]), layers(prepared[y]), metric, **kw
        )
        ours = results.grid(metric, row["model_x"], row["model_y"])
        np.testing.assert_allclose(ours, grid, atol=2e-6, rtol=0)
        assert (int(row["best_layer_x"]), int(row["best_layer_y"])) == pair
        assert row["score"] == pytest.approx(best, abs=2e-6)


def test_params_bpb_and_family_come_from_the_files_and_catalogue(catalogue_env):
    results = run_alignment(
        resolve("published-language"),
        resolve("published-vision"),
        catalogue_env["store"],
        AlignConfig(metrics="mutual_knn"),
        progress=False,
    )
    row = results.table.set_index(["model_x", "model_y"]).loc[("published/bloom_m", "published/dino_b")]
    assert row["params_x"] == 1_700_000_000 and row["params_y"] == 86_000_000
    assert row["bpb_x"] == pytest.approx(0.95) and np.isnan(row["bpb_y"])
    assert (row["family_x"], row["family_y"]) == ("BLOOMZ", "DINOv2")
    assert results.provenance["dataset"]["name"] == DATASET
    assert results.provenance["memory"]["estimate_bytes"] > 0
    assert set(results.provenance["stages"]) >= {"load", "caches", "grid", "calibration"}


@pytest.mark.parametrize(
    "options",
    [
        {"metrics": ("mutual_knn", "unbiased_cka", "cknna", "rsa"), "calibrate": 19, "bootstrap": 3},
        {"metrics": ("mutual_knn",), "select": "held-out", "select_splits": 3},
    ],
)
def test_streamed_grid_equals_the_all_in_memory_grid_bit_for_bit(catalogue_env, options):
    store = catalogue_env["store"]
    specs = resolve("published")
    config = AlignConfig(shuffle_control=True, **options)
    streamed = run_alignment(specs, None, store, config, progress=False)
    pools = {s.name: s.pool for s in specs}
    models = load_features([s.name for s in specs], store, dataset_name=DATASET, n=N, pools=pools, q=config.q)
    for model, spec in zip(models, specs):
        model.info.setdefault("family", spec.family)
        model.info.setdefault("competence", {})
    memory = PairGrid(models, None, config, controls=shuffled_control(N, config.seed)).run(progress=False)
    pd.testing.assert_frame_equal(streamed.table, memory.table, check_exact=True)
    assert streamed.table["control"].nunique() == 2
    assert streamed.table.get("p_value", streamed.table.get("held_out")).notna().any()
    assert sorted(streamed.grids) == sorted(memory.grids)
    for key, grid in memory.grids.items():
        assert np.array_equal(streamed.grids[key], grid), key


def test_a_set_that_would_not_fit_is_refused_with_the_estimate(catalogue_env, monkeypatch):
    monkeypatch.setenv("PRH_MEMORY_LIMIT", "2e5")
    with pytest.raises(InputError, match=r"pair grid of 5 models .* needs about .*available"):
        run_alignment(
            resolve("published"), None, catalogue_env["store"], AlignConfig(metrics="cknna"), progress=False
        )


def test_a_missing_file_names_the_fetch_command(catalogue_env, tmp_path, monkeypatch, capsys):
    store = FeatureStore(tmp_path / "empty")
    with pytest.raises(MissingFeaturesError) as err:
        run_alignment(resolve("published-vision"), None, store, AlignConfig(), progress=False)
    message = str(err.value)
    assert "\n" not in message
    assert f"`prh fetch-reference dino_s,dino_b --store {store.root}`" in message
    args = ["align", "--models", "published", "--store", str(store.root), "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", ["prh", *args, "--no-report"])
    with pytest.raises(SystemExit) as exc:
        main()
    err_text = capsys.readouterr().err
    assert exc.value.code == 2 and "prh fetch-reference" in err_text and "Traceback" not in err_text


def test_published_features_never_mix_with_another_dataset(catalogue_env, tmp_path):
    with pytest.raises(InputError, match=r"minhuh/prh@wit_1024.*'openmoji'|'openmoji'.*minhuh/prh@wit_1024"):
        run_alignment(resolve("published"), None, catalogue_env["store"], AlignConfig(), dataset="openmoji")


def test_prh_align_models_published_end_to_end(catalogue_env, tmp_path):
    out = tmp_path / "out"
    res = CliRunner().invoke(
        app,
        [
            "align",
            "--models",
            "published-language",
            "--models-y",
            "published-vision",
            "--metric",
            "mutual_knn",
            "--store",
            str(catalogue_env["store"].root),
            "--out",
            str(out),
            "--no-report",
        ],
    )
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "results.csv")
    assert len(table) == 6 and set(table["family_y"]) == {"DINOv2"}
    assert load_catalogue().dataset.name == DATASET


def test_the_report_draws_fig3_from_the_right_numbers(catalogue_env, tmp_path):
    from scipy.stats import spearmanr

    from prh.align import Results
    from prh.report import build_report
    from prh.report.paper import fig3_points, trends

    config = AlignConfig(metrics=("mutual_knn", "unbiased_cka"), calibrate=19)
    run_alignment(resolve("published"), None, catalogue_env["store"], config, progress=False).save(tmp_path)
    build_report(tmp_path)
    results = Results.load(tmp_path)
    for name in ("paper_fig3.png", "paper_heatmaps.png", "paper_within_family.png"):
        assert (tmp_path / "figures" / name).stat().st_size > 1000
    markdown = (tmp_path / "report.md").read_text()
    assert (
        "Fig. 3" in markdown and "mutual_knn, raw: " in markdown and "unbiased_cka, calibrated: " in markdown
    )

    # independently: 1 - bpb read from each file, the reference loop's best mutual kNN, scipy's Spearman
    raw = {n: torch.load(catalogue_env["tmp"] / f"{n}.pt", weights_only=True) for n in LANGUAGE + VISION}
    performance = [1.0 - float(raw[n]["bpb"]) for n in LANGUAGE]
    prepared = {n: reference_alignment.prepare_features(raw[n]["feats"]) for n in LANGUAGE + VISION}

    def layers(feats):
        return [feats[:, i] for i in range(feats.shape[1])] if isinstance(feats, torch.Tensor) else feats

    points = fig3_points(results, "mutual_knn")
    table = trends(points)
    assert set(points["family"]) == {"DINOv2"} and len(points) == len(LANGUAGE) * len(VISION)
    for vision in VISION:
        best = [
            reference_impl.compute_score(layers(prepared[lm]), layers(prepared[vision]), "mutual_knn", k=10)[
                1
            ]
            for lm in LANGUAGE
        ]
        best = [round(b * N * 10) / (N * 10) for b in best]  # mutual kNN counts shared neighbours: exact ties
        line = points[points["vision"] == f"published/{vision}"].set_index("language")
        ours = line.loc[[f"published/{lm}" for lm in LANGUAGE]]
        np.testing.assert_allclose(ours["performance"], performance, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours["alignment"], best, rtol=0, atol=2e-6)
        row = table[table["line"] == f"published/{vision}"].iloc[0]
        assert row["rho"] == pytest.approx(spearmanr(performance, best).statistic, abs=1e-12)
        assert row["ci_low"] <= row["rho"] <= row["ci_high"]
    calibrated = fig3_points(results, "mutual_knn", "calibrated")
    assert np.array_equal(calibrated["alignment"].notna(), points["alignment"].notna())


def test_prh_alignment_takes_the_published_sets(catalogue_env):
    import prh

    platonic = prh.Alignment(
        dataset="minhuh/prh", subset="wit_1024", models="published-vision", store=catalogue_env["store"].root
    )
    assert platonic.models == VISION
    feats = torch.stack(_layers([24] * 3, [1.0, 0.5, 2.0], 9), dim=1)
    scores = platonic.score(feats, metric="mutual_knn", topk=10)
    assert set(scores) == set(VISION) and all(0 < s[0] <= 1 for s in scores.values())


def test_the_table_form_of_the_mutual_knn_grid_equals_the_direct_comparison():
    from prh._sweep import cache_layers
    from prh.metrics.knn import _mutual_grid_direct, _mutual_grid_table

    g = torch.Generator().manual_seed(3)
    xs = [torch.randn(40, 3, generator=g) for _ in range(4)]
    ys = [torch.randn(40, 2, generator=g) + xs[i][:, :2] for i in range(3)]
    for k in (1, 5, 39):
        cx, cy = cache_layers(xs, "mutual_knn", k=k).caches, cache_layers(ys, "mutual_knn", k=k).caches
        assert torch.equal(_mutual_grid_table(cx, cy, k), _mutual_grid_direct(cx, cy, k))
