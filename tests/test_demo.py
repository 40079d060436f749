"""`prh demo --fast` on the real offline zoo (EfficientNet-Lite0 and MiniLM-L6, 256 OpenMoji pairs)."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from prh.cli import app
from prh.models import availability, get_model

pytestmark = pytest.mark.slow


def test_demo_fast_end_to_end_on_the_real_zoo(tmp_path):
    for name in ("effnet-lite0", "minilm-l6"):
        ok, why = availability(get_model(name))
        if not ok:
            pytest.skip(f"{name}: {why}")
    out, store = tmp_path / "results", tmp_path / "cache" / "features"
    args = [
        "demo",
        "--fast",
        "--out",
        str(out),
        "--store",
        str(store),
        "--device",
        "cpu",
        "--calibrate",
        "99",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out / "results.csv")
    mk = table[(table["metric"] == "mutual_knn") & (table["modality_x"] != table["modality_y"])]
    real = mk[mk["control"] == "none"]["score"].max()
    shuffled = mk[mk["control"] == "shuffled_captions"]["score"].max()
    chance = 10 / (256 - 1)
    assert (
        real > 2.5 * shuffled and real > 3 * chance
    )  # real pretrained models share structure; the control does not
    assert shuffled < 2 * chance
    assert mk[mk["control"] == "none"]["p_value"].iloc[0] <= 0.01
    # statistics for the cross-modal mutual_knn rows only: a real interval around the real pair, none elsewhere
    best = mk[mk["control"] == "none"].iloc[0]
    assert best["ci_low"] < best["score"] < best["ci_high"] and best["ci_low"] > 3 * chance
    others = table[(table["metric"] != "mutual_knn") | (table["modality_x"] == table["modality_y"])]
    assert others["ci_low"].isna().all() and others["p_value"].isna().all()
    html = (out / "report.html").read_text()
    assert (
        "figures/cross_modal_mutual_knn.png" in html
        and (out / "figures" / "cross_modal_mutual_knn.png").is_file()
    )
    # a second run reuses cached features and cached alignment results
    res2 = CliRunner().invoke(app, args)
    assert res2.exit_code == 0 and "already stored" in res2.output
    pd.testing.assert_frame_equal(pd.read_csv(out / "results.csv"), table)
