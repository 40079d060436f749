"""The alignment pipeline end to end on tiny random models saved to disk (real loading code, real feature store,
real folder dataset): `prh extract` -> `prh align` -> table, grids, report; the shuffled control; prh.Alignment;
and the errors a user meets (missing features, features from different data, empty results folder)."""

from __future__ import annotations

import copy
import json
import re

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from prh.align import STATS_COLUMNS, TABLE_COLUMNS, AlignConfig, ModelFeatures, PairGrid, Results
from prh.cli import app
from prh.errors import InputError, MissingFeaturesError
from prh.models.tiny import tiny_causal_lm, tiny_text_encoder, tiny_tokenizer, tiny_vit

N = 36
runner = CliRunner()


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Tiny models + a folder dataset of N coloured images with captions + a models TOML; features extracted."""
    root = tmp_path_factory.mktemp("pipeline")
    tok = tiny_tokenizer()
    tiny_causal_lm("gpt2").save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    tiny_text_encoder().save_pretrained(root / "enc")
    tok.save_pretrained(root / "enc")
    tiny_vit(seed=0).save_pretrained(root / "vit")
    tiny_vit(seed=1, layers=2).save_pretrained(root / "vit2")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "apple", "dog", "cat", "rocket", "face", "tree", "house", "sun", "moon"]
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(N):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            caption = " ".join(rng.choice(words, size=3 + i % 4))
            fh.write(json.dumps({"file_name": f"img{i}.png", "text": caption}) + "\n")
    models = root / "models.toml"
    entries = [
        ("tiny-lm", "lm", "hf-causal-lm", "language", 1000),
        ("tiny-enc", "enc", "hf-text-encoder", "language", 2000),
        ("tiny-vit", "vit", "hf-vision", "vision", 3000),
        ("tiny-vit2", "vit2", "hf-vision", "vision", 4000),
    ]
    text = ""
    for name, folder, adapter, modality, params in entries:
        text += f'[[model]]\nname = "{name}"\nsource = "{root / folder}"\nadapter = "{adapter}"\nmodality = "{modality}"\nparams = {params}\n'
        if adapter == "hf-vision":
            text += 'pool = "cls"\n'
    text += '[sets]\ntiny = ["tiny-lm", "tiny-enc", "tiny-vit", "tiny-vit2"]\n'
    models.write_text(text)
    store = root / "store"
    res = runner.invoke(
        app,
        [
            "extract",
            "--models",
            "tiny",
            "--dataset",
            str(data),
            "--store",
            str(store),
            "--models-file",
            str(models),
            "--no-progress",
            "--device",
            "cpu",
            "--batch-size",
            "8",
        ],
    )
    assert res.exit_code == 0, res.output
    return {"root": root, "data": data, "models": models, "store": store}


@pytest.fixture(scope="module")
def aligned(workspace):
    out = workspace["root"] / "results"
    res = runner.invoke(
        app,
        [
            "align",
            "--models",
            "tiny",
            "--dataset",
            str(workspace["data"]),
            "--store",
            str(workspace["store"]),
            "--out",
            str(out),
            "--models-file",
            str(workspace["models"]),
            "--k",
            "5",
            "--calibrate",
            "19",
            "--shuffle-control",
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def test_table_has_every_column_and_each_unordered_pair_once(aligned):
    table = pd.read_csv(aligned / "results.csv")
    assert list(table.columns) == TABLE_COLUMNS + STATS_COLUMNS
    main = table[table["control"] == "none"]
    for metric in ("mutual_knn", "unbiased_cka"):  # symmetric: 4 models -> 6 pairs + 4 self-pairs, each once
        pairs = main[main["metric"] == metric][["model_x", "model_y"]].apply(frozenset, axis=1)
        assert len(pairs) == 4 * 5 // 2 and pairs.nunique() == len(pairs)
    ordered = main[main["metric"] == "cknna"][["model_x", "model_y"]].apply(tuple, axis=1)
    assert len(ordered) == 16 and ordered.nunique() == 16  # cknna is not symmetric: every ordered pair
    assert set(table["N"]) == {N} and set(table.loc[table["metric"] != "unbiased_cka", "k"]) == {5}
    assert table.loc[table["metric"] == "mutual_knn", "p_value"].between(1 / 20, 1).all()
    lm = table[table["model_x"] == "tiny-lm"].iloc[0]
    counted = sum(
        p.numel() for p in tiny_causal_lm("gpt2").parameters()
    )  # the adapter counts real parameters
    assert lm["modality_x"] == "language" and lm["params_x"] == counted and lm["bpb_x"] > 0


def test_model_against_itself_scores_one_at_matching_layers(aligned):
    results = Results.load(aligned)
    t = results.table
    self_rows = t[(t["model_x"] == t["model_y"]) & (t["control"] == "none")]
    assert len(self_rows) == 12  # 4 models x 3 metrics
    np.testing.assert_allclose(self_rows["score"], 1.0, atol=1e-9)
    for _, row in self_rows.iterrows():
        grid = results.grid(row["metric"], row["model_x"], row["model_y"])
        np.testing.assert_allclose(np.diag(grid), 1.0, atol=1e-9)


def test_grids_match_table_and_symmetric_lookup(aligned):
    results = Results.load(aligned)
    row = results.table[
        (results.table["metric"] == "mutual_knn")
        & (results.table["model_x"] != results.table["model_y"])
        & (results.table["control"] == "none")
    ].iloc[0]
    grid = results.grid("mutual_knn", row["model_x"], row["model_y"])
    assert grid.max() == pytest.approx(row["score"])
    assert np.unravel_index(grid.argmax(), grid.shape) == (row["best_layer_x"], row["best_layer_y"])
    np.testing.assert_array_equal(results.grid("mutual_knn", row["model_y"], row["model_x"]), grid.T)
    prov = json.loads((aligned / "provenance.json").read_text())
    assert prov["N"] == N and len(prov["dataset"]["fingerprint"]) == 64 and prov["calibrate_K"] == 19


def test_report_references_every_figure_and_they_exist(aligned):
    html = (aligned / "report.html").read_text(encoding="utf-8")
    figs = re.findall(r"<img src='([^']+)'", html)
    assert len(figs) >= 6
    for f in figs:
        assert (aligned / f).is_file() and (aligned / f).stat().st_size > 1000
    html = (aligned / "report.html").read_text()
    assert "Findings" in html and "tiny-vit" in html
    assert (aligned / "report.md").read_text().count("![") == len(figs)


def test_shuffled_control_falls_to_chance_while_shared_structure_does_not():
    g = torch.Generator().manual_seed(0)
    n, k = 300, 10
    z = torch.randn(n, 16, generator=g)
    lang = ModelFeatures(
        "lang",
        [
            torch.nn.functional.normalize(
                z @ torch.randn(16, 24, generator=g) + 0.3 * torch.randn(n, 24, generator=g), dim=1
            )
        ],
        {"modality": "language"},
    )
    vis = ModelFeatures(
        "vis",
        [
            torch.nn.functional.normalize(
                z @ torch.randn(16, 12, generator=g) + 0.3 * torch.randn(n, 12, generator=g), dim=1
            )
        ],
        {"modality": "vision"},
    )
    perm = torch.randperm(n, generator=g)
    config = AlignConfig(metrics=["mutual_knn"], k=k)
    res = PairGrid([lang], [vis], config, controls={"shuffled_captions": perm}).run(progress=False)
    real = res.table[res.table["control"] == "none"]["score"].iloc[0]
    shuffled = res.table[res.table["control"] == "shuffled_captions"]["score"].iloc[0]
    chance = k / (n - 1)
    assert real > 5 * chance
    assert abs(shuffled - chance) < 0.02


def test_alignment_api_scores_a_reference_against_itself_as_one(workspace):
    import prh
    from prh.align.alignment import ReferenceScore
    from prh.features.store import FeatureStore
    from prh.models import load_user_config

    load_user_config(workspace["models"])
    platonic = prh.Alignment(
        dataset=str(workspace["data"]), models="tiny", store=workspace["store"], modality="vision"
    )
    assert len(platonic.get_data("text")) == N and platonic.get_data("image")[0].mode == "RGB"
    dataset = platonic.dataset
    feats = FeatureStore(workspace["store"]).load(dataset, "tiny-vit", "cls").layers
    scores = platonic.score(feats, metric="mutual_knn", k=5)
    assert set(scores) == {"tiny-vit", "tiny-vit2"}
    best = scores["tiny-vit"]
    assert best.score == pytest.approx(1.0) and best.layers[0] == best.layers[1]
    # one result type in both modes: the reference's (score, (i, j)) tuple, with the dict form's keys readable
    assert isinstance(best, ReferenceScore) and tuple(best) == (best.score, best.layers)
    assert (best["score"], best["layers"], best["p_value"], best["calibrated"]) == (*best, None, None)
    assert best.sweep.best == best.score and best.sweep.best_layers == best.layers
    with pytest.raises(AttributeError, match="frozen"):
        best.score = 0.0
    with pytest.raises(KeyError, match="score"):
        best["best"]
    assert copy.deepcopy(best) == best and copy.deepcopy(best).sweep.best == best.score
    calibrated = platonic.score(feats, metric="mutual_knn", k=5, calibrate=19)["tiny-vit2"]
    assert 0 < calibrated.p_value <= 1 and calibrated["p_value"] == calibrated.p_value
    assert calibrated.calibrated == float(calibrated.calibration.calibrated)
    with pytest.raises(InputError, match="N=10 rows"):
        platonic.score([f[:10] for f in feats])


def test_missing_features_name_the_extract_command(workspace, tmp_path):
    res = runner.invoke(
        app,
        [
            "align",
            "--models",
            "tiny",
            "--dataset",
            str(workspace["data"]),
            "--store",
            str(tmp_path / "empty"),
            "--out",
            str(tmp_path / "r"),
            "--models-file",
            str(workspace["models"]),
        ],
    )
    assert isinstance(res.exception, MissingFeaturesError)
    assert "prh extract --models tiny-lm" in str(res.exception) and "4 model(s)" in str(res.exception)


def test_features_from_different_data_are_refused(workspace):
    from prh.align import load_features
    from prh.features.store import FeatureStore

    store = FeatureStore(workspace["store"])
    entries = store.entries()
    sidecar = [e for e in entries if e["model"] == "tiny-enc"][0]["path"].replace(".safetensors", ".json")
    original = open(sidecar).read()
    try:
        meta = json.loads(original)
        meta["dataset"]["fingerprint"] = "0" * 64
        open(sidecar, "w").write(json.dumps(meta))
        with pytest.raises(InputError, match="extracted on different data"):
            load_features(
                ["tiny-lm", "tiny-enc"],
                store,
                dataset_name=entries[0]["dataset"]["name"],
                n=N,
                pools={"tiny-lm": "mean", "tiny-enc": "mean"},
            )
    finally:
        open(sidecar, "w").write(original)


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path)])
    assert isinstance(res.exception, InputError) and "holds no results" in str(res.exception)
    res = runner.invoke(app, ["report", str(tmp_path / "nope")])
    assert "does not exist" in str(res.exception)


def test_summary_lists_cross_modal_pairs_before_within_modality_pairs(aligned, capsys):
    from prh.commands._summary import print_summary

    print_summary(Results.load(aligned), top=20)
    out = capsys.readouterr().out
    cross, within = out.index("cross-modal alignment"), out.index("within-modality alignment")
    assert cross < within
    cross_part, within_part = out[cross:within], out[within : out.index("•")]
    assert "tiny-vit" in cross_part and "tiny-lm" in cross_part
    assert "tiny-vit2" in within_part and "tiny-enc" in within_part
    # a vision x language pair never lands in the within-modality table, and vice versa
    for line in within_part.splitlines():
        if "tiny-lm" in line or "tiny-enc" in line:
            assert "tiny-vit" not in line
    assert not any("tiny-lm" in ln and "tiny-enc" in ln for ln in cross_part.splitlines())


def test_layer_caches_are_keyed_by_content_and_shared_by_real_and_control_pairs(monkeypatch):
    import prh.align.engine as engine

    g = torch.Generator().manual_seed(0)
    info = {"write_id": "w"}
    lang = [
        ModelFeatures(f"l{i}", [torch.randn(20, 6, generator=g)], {**info, "modality": "language"})
        for i in range(2)
    ]
    vis = [
        ModelFeatures(f"v{i}", [torch.randn(20, 5, generator=g)], {**info, "modality": "vision"})
        for i in range(2)
    ]
    built = []
    real = engine.cache_layers
    monkeypatch.setattr(
        engine,
        "cache_layers",
        lambda layers, metric, name, **kw: built.append(name) or real(layers, metric, name=name, **kw),
    )
    perm = torch.randperm(20, generator=g)
    exp = PairGrid(lang, vis, AlignConfig(metrics=["mutual_knn"], k=3), controls={"shuffled_captions": perm})
    res = exp.run(progress=False)
    assert len(res.table) == 8 and [j[1] for j in exp.plan()].count("shuffled_captions") == 4
    # four models, plus one row-permuted copy of each language model: nothing is built twice
    assert sorted(built) == ["l0", "l0", "l1", "l1", "v0", "v1"]
    assert lang[0].content_key != lang[0].permuted(perm, "l0").content_key


def test_run_alignment_by_dataset_or_name_and_its_cache_keyed_by_the_config(workspace, tmp_path):
    from prh.align import DatasetName, run_alignment
    from prh.data import load_dataset
    from prh.features.store import FeatureStore
    from prh.models import load_user_config, resolve_models

    load_user_config(workspace["models"])
    specs, store = resolve_models("tiny-vit,tiny-lm"), FeatureStore(workspace["store"])
    dataset = load_dataset(str(workspace["data"]), n=N)
    config = AlignConfig(metrics=["mutual_knn"], k=5, calibrate=19)
    by_data = run_alignment(specs, None, store, config, dataset=dataset, progress=False)
    by_name = run_alignment(specs, None, store, config, dataset=DatasetName(dataset.name, N), progress=False)
    pd.testing.assert_frame_equal(by_name.table, by_data.table)
    assert by_data.provenance["config"] == config.to_dict()
    cache = tmp_path / "cache"
    first = run_alignment(specs, None, store, config, dataset=dataset, progress=False, cache_dir=cache)
    again = run_alignment(specs, None, store, config, dataset=dataset, progress=False, cache_dir=cache)
    assert again.provenance["cache_key"] == first.provenance["cache_key"] and len(list(cache.iterdir())) == 1
    pd.testing.assert_frame_equal(again.table, first.table)
    other = run_alignment(
        specs, None, store, config.replace(seed=1), dataset=dataset, progress=False, cache_dir=cache
    )
    assert other.provenance["cache_key"] != first.provenance["cache_key"] and len(list(cache.iterdir())) == 2
