"""`prh align --calibrate K` works for every registered metric: two tiny models' features (one vision, one
language, N=32) written straight into a feature store, then the CLI end to end (table with p-values, report)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import prh
from prh.cli import app
from prh.errors import InputError

N = 32
runner = CliRunner()


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A folder dataset of N items, a models TOML with one vision and one language model, their features stored."""
    from prh.data import load_dataset
    from prh.features.store import FeatureStore

    root = tmp_path_factory.mktemp("calibrate_cli")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(N):
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            fh.write(json.dumps({"file_name": f"img{i}.png", "text": f"item {i}"}) + "\n")
    dataset = load_dataset(str(data), n=N)
    models = root / "models.toml"
    models.write_text(
        f'[[model]]\nname = "cal-vis"\nsource = "{root / "vis"}"\nadapter = "hf-vision"\nmodality = "vision"\n'
        f'[[model]]\nname = "cal-lang"\nsource = "{root / "lang"}"\nadapter = "hf-causal-lm"\n'
        'modality = "language"\n'
    )
    store = FeatureStore(root / "store")
    g = torch.Generator().manual_seed(0)
    shared = torch.randn(N, 8, generator=g)
    # widths up to 15 < N/2: every pair of layers keeps rank(A) + rank(B) <= N-1, where CCA is defined (pwcca)
    for name, modality, dims in (("cal-vis", "vision", (12, 15)), ("cal-lang", "language", (10, 14, 12))):
        layers = [
            shared @ torch.randn(8, d, generator=g) + 0.5 * torch.randn(N, d, generator=g) for d in dims
        ]
        store.save(
            dataset,
            name,
            "mean",
            layers,
            [f"layer{i}" for i in range(len(layers))],
            None,
            {"model": name, "modality": modality, "family": "tiny", "params": 1000},
        )
    return {"root": root, "data": data, "models": models, "store": root / "store"}


@pytest.mark.parametrize("metric", prh.metrics.names())
def test_align_calibrate_succeeds_for_every_metric(stored, metric, tmp_path):
    out = tmp_path / "results"
    args = ["align", "--models", "cal-vis,cal-lang", "--dataset", str(stored["data"]), "--n", str(N)]
    args += ["--metric", metric, "--k", "4", "--calibrate", "20", "--pool", "mean", "--no-report"]
    args += ["--store", str(stored["store"]), "--out", str(out), "--models-file", str(stored["models"])]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    results = prh.align.Results.load(out)
    cross = results.table[results.table["modality_x"] != results.table["modality_y"]]
    assert len(cross) >= 1 and set(cross["metric"]) == {metric}
    assert cross["p_value"].notna().all()
    assert ((cross["p_value"] > 0) & (cross["p_value"] <= 1)).all()


def test_align_select_held_out_adds_columns(stored, tmp_path):
    out = tmp_path / "held"
    args = ["align", "--models", "cal-vis,cal-lang", "--dataset", str(stored["data"]), "--n", str(N)]
    args += ["--metric", "mutual_knn,linear_predictivity", "--k", "4", "--pool", "mean", "--no-report"]
    args += ["--select", "held-out", "--select-splits", "5"]
    args += ["--store", str(stored["store"]), "--out", str(out), "--models-file", str(stored["models"])]
    res = runner.invoke(app, args)
    assert res.exit_code == 0, f"{res.output}\n{res.exception!r}"
    table = prh.align.Results.load(out).table
    assert table["held_out"].notna().all()
    assert (table["held_out_low"] <= table["held_out_high"]).all()
    assert table["held_out_share"].between(0.2, 1.0).all()
    assert "held-out" in res.output
    bad = runner.invoke(app, [*args[:-4], "--select", "best", "--out", str(tmp_path / "x")])
    assert isinstance(bad.exception, InputError) and "select" in str(bad.exception)
