"""`prh experiment gallery-size`: sizes, subsets and pairing layouts by hand, and the experiment end to end
on tiny random models (real loading code, feature store and folder dataset with three captions per item)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

import prh
from prh.cli import app
from prh.errors import InputError
from prh.experiments import RunOptions, gallery_size, names, run
from test_experiments import N, tiny  # noqa: F401  (the shared tiny models + dataset fixture)

runner = CliRunner()


def test_gallery_size_is_registered():
    assert "gallery-size" in names()


def test_sizes_auto_and_explicit():
    assert gallery_size.parse_sizes("auto", 1460) == [128, 256, 512, 1024, 1460]
    assert gallery_size.parse_sizes("auto", 100) == [100]
    assert gallery_size.parse_sizes("512, 128", 600) == [128, 512]
    for bad, match in (
        ("12", "between 16"),
        ("700", "N=600"),
        ("128,x", "not an integer"),
        ("64,64", "twice"),
    ):
        with pytest.raises(InputError, match=match):
            gallery_size.parse_sizes(bad, 600)


def test_config_refuses_bad_values():
    with pytest.raises(InputError, match="pairing"):
        gallery_size.GallerySizeConfig(pairing="one,many")
    with pytest.raises(InputError, match="calibrate=5"):
        gallery_size.GallerySizeConfig(calibrate=5)
    with pytest.raises(InputError, match="captions=1"):
        gallery_size.GallerySizeConfig(captions=1)


def test_subsets_are_seeded_distinct_items_and_the_full_set_once():
    draws = gallery_size.subsets(50, [16, 32, 50], repeats=3, seed=0)
    assert [(m, r) for m, r, _ in draws] == [(16, 0), (16, 1), (16, 2), (32, 0), (32, 1), (32, 2), (50, 0)]
    for m, _, idx in draws:
        assert idx.numel() == m and idx.unique().numel() == m and bool((idx[1:] > idx[:-1]).all())
    again = gallery_size.subsets(50, [16, 32, 50], repeats=3, seed=0)
    assert all(torch.equal(a[2], b[2]) for a, b in zip(draws, again))
    assert not torch.equal(draws[0][2], draws[1][2])


def test_pairing_layouts_keep_image_and_caption_rows_aligned():
    g = torch.Generator().manual_seed(0)
    img = [torch.randn(5, 4, generator=g)]
    caps = [[torch.randn(5, 3, generator=g)] for _ in range(3)]  # 3 captions per item
    vis, txt, c = gallery_size._views({"v": img}, {"t": caps}, "all")
    assert c == 3 and vis["v"][0].shape == (15, 4) and txt["t"][0].shape == (15, 3)
    for i in range(5):
        for j in range(3):
            assert torch.equal(vis["v"][0][i * 3 + j], img[0][i])  # row i*c+j: image i ...
            assert torch.equal(txt["t"][0][i * 3 + j], caps[j][0][i])  # ... with its caption j
    rows = gallery_size._rows(torch.tensor([1, 4]), 3)
    assert rows.tolist() == [3, 4, 5, 12, 13, 14]
    _, mean, c1 = gallery_size._views({"v": img}, {"t": caps}, "average")
    assert c1 == 1
    torch.testing.assert_close(mean["t"][0], (caps[0][0] + caps[1][0] + caps[2][0]) / 3)


def test_gallery_size_end_to_end_on_tiny_models(tiny):  # noqa: F811
    options = RunOptions(
        models="exptiny", dataset=str(tiny["data"]), store=str(tiny["root"] / "store"),
        out=str(tiny["root"] / "gallery"), device="cpu", progress=False,
    )  # fmt: skip
    config = {"sizes": f"16,{N}", "repeats": 2, "k": 3, "calibrate": 19, "captions": 3}
    result = run("gallery-size", options, config)
    scores = pd.read_csv(result.folder / "scores.csv")
    # 3 pairings x (2 subsets of 16 + the full set) x (2 language x 1 vision)
    assert len(scores) == 3 * 3 * 2
    rows = np.where(scores["pairing"] == "all", scores["size"] * 3, scores["size"])
    np.testing.assert_array_equal(scores["rows"], rows)
    np.testing.assert_allclose(scores["chance"], 3 / (rows - 1))
    assert scores["p_value"].between(1 / 20, 1).all() and scores["calibrated"].between(0, 1).all()
    # the full one-caption gallery equals an independent sweep of the stored, prepared features
    from prh.data import load_dataset
    from prh.features.store import FeatureStore

    store, ds = FeatureStore(tiny["root"] / "store"), load_dataset(str(tiny["data"]))
    full = scores[(scores["pairing"] == "one") & (scores["size"] == N)]
    from prh.experiments.averaging import caption_sets
    from prh.models import get_model
    from prh.models.base import check_pool

    def stored(name, data):
        return prh.prepare(store.load(data, name, check_pool(get_model(name), None)).layers)

    vit = stored("exp-vit", ds)
    first_caption = caption_sets(ds, 3)[0]  # "one" pairs each image with its first caption
    for _, row in full.iterrows():
        lang = stored(row["model_x"], first_caption)
        assert row["score"] == pytest.approx(prh.sweep(lang, vit, "mutual_knn", k=3).best, abs=1e-12)
    curves = pd.read_csv(result.folder / "curves.csv")
    assert set(curves["pairing"]) == {"one", "average", "all"} and curves["subsets"].isin([1, 2]).all()
    assert (result.folder / "figures" / "gallery_size.png").stat().st_size > 0
    assert (result.folder.parents[1] / "sections" / "60-gallery-size.html").is_file()
    assert set(result.summary["pairings"]) == {"one", "average", "all"}


def test_gallery_size_through_the_command_refuses_one_caption_for_many_to_many(tiny):  # noqa: F811
    res = runner.invoke(
        app,
        ["experiment", "gallery-size", "--models", "exptiny", "--models-file", str(tiny["models"]), "--dataset",
         str(tiny["single"]), "--store", str(tiny["root"] / "store"), "--out", str(tiny["root"] / "g1"),
         "--device", "cpu", "--no-progress", "--k", "2", "--calibrate", "0", "--pairing", "one,all"],
    )  # fmt: skip
    assert isinstance(res.exception, InputError) and "caption" in str(res.exception)
