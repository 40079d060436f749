"""Each experiment end to end on the real offline zoo with small N (slow: extraction of real pretrained models).

Needs the packages of the Makefile's test zoo (openmoji, effnet-lite0, minilm-l6); skipped without them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from prh.experiments import RunOptions, run

pytestmark = pytest.mark.slow
MODELS = "effnet-lite0,minilm-l6"


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    from prh.models import availability, resolve_models

    missing = [s.name for s in resolve_models(MODELS) if not availability(s)[0]]
    try:
        from prh.data import load_dataset

        load_dataset("openmoji", n=8)
    except Exception:  # noqa: BLE001 - any reason the offline dataset is not there
        missing.append("openmoji")
    if missing:
        pytest.skip(f"offline zoo packages missing: {missing} (`prh zoo install {' '.join(missing)}`)")
    root = tmp_path_factory.mktemp("experiments-zoo")
    return {"store": str(root / "store"), "out": str(root / "results")}


def _options(zoo, **kw):
    return RunOptions(models=MODELS, store=zoo["store"], out=zoo["out"], device="cpu", progress=False, **kw)


def test_colors_on_the_zoo(zoo):
    result = run("colors", _options(zoo, n=96), {"permutations": 199})
    vs = result.summary["vs_cielab"]
    assert set(vs) == {"pixels (PMI)", "minilm-l6", "effnet-lite0"}
    chance = result.summary["chance_knn"]
    for name in ("pixels (PMI)", "effnet-lite0"):  # pixels and swatches: far above chance, significant
        assert vs[name]["mutual_knn"] > 3 * chance and vs[name]["p_knn"] <= 0.01, (name, vs[name])
    assert vs["minilm-l6"]["p_spearman"] <= 0.05, vs["minilm-l6"]  # the language kernel is shaped like CIELAB
    for row in vs.values():  # the label-shuffled control stays at chance
        assert row["control_knn"] < 2.5 * chance and abs(row["control_spearman"]) < 0.15, row


def test_caption_density_on_the_zoo(zoo):
    result = run("caption-density", _options(zoo, n=96), {"permutations": 99, "bootstrap": 20})
    levels = result.summary["levels"]
    assert [lv["level"] for lv in levels] == ["name", "keywords", "sentence"]
    assert levels[0]["mean_words"] < levels[1]["mean_words"] < levels[2]["mean_words"]
    table = pd.read_csv(result.folder / "results.csv")
    assert len(table) == 3 and (table["score"] > table["k"] / (table["N"] - 1)).all()
    assert table["ci_low"].le(table["score"]).all() and table["score"].le(table["ci_high"]).all()


def test_test_time_averaging_on_the_zoo(zoo):
    result = run("test-time-averaging", _options(zoo, n=96), {"views": 3, "captions": 3, "bootstrap": 20})
    (pair,) = result.summary["pairs"]
    chance = result.summary["chance"]
    assert pair["score_1"] > 2 * chance
    assert pair["control_mean"] < pair["score_1"]  # the shuffled pairing falls toward chance
    curves = pd.read_csv(result.folder / "curves.csv")
    assert len(curves) == 3 + 3 + 3 and np.isfinite(curves["score"]).all()
