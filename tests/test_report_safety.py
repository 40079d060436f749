"""report.md shows model names as text, as report.html does; every written file gets the mode the umask gives
(feature files as their sidecars)."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
import torch

from prh.align import Results
from prh.atomic import atomic_write_bytes
from prh.report import build_report
from prh.report.build import md_text
from test_findings import results  # noqa: F401  (the shared results fixture)

EVIL = "<script>alert(1)</script>"
PIPE = "a|b*c_[x](y)"


def test_md_text_escapes_html_and_markup():
    assert md_text(EVIL) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert md_text(PIPE) == "a\\|b\\*c\\_\\[x\\](y)"
    assert md_text("minilm-l6") == "minilm-l6"


def test_report_md_escapes_model_names(tmp_path, results):  # noqa: F811
    t = results.table.replace({"vis-large": EVIL, "enc-a": PIPE})
    res = Results(t, {}, results.provenance)
    for _, r in t.iterrows():
        res.grids[Results.grid_key(r.metric, r.control, r.model_x, r.model_y)] = np.full((10, 12), r.score)
    out = tmp_path / "run"
    res.save(out)
    build_report(out)
    md = (out / "report.md").read_text(encoding="utf-8")
    table = md.split("## All model pairs")[1]
    assert EVIL not in table and "&lt;script&gt;alert(1)&lt;/script&gt;" in table
    assert "a\\|b\\*c\\_\\[x\\](y)" in table
    rows = [line for line in table.splitlines() if line.startswith("|")]
    assert len({line.count("|") - line.count("\\|") for line in rows}) == 1  # no cell split by a name
    assert EVIL not in (out / "report.html").read_text(encoding="utf-8")


@pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_honour_the_umask(tmp_path, umask):
    from safetensors.torch import save_file

    from prh.atomic import atomic_write

    old = os.umask(umask)
    try:
        feats = atomic_write(tmp_path / "f.safetensors", lambda p: save_file({"x": torch.zeros(2)}, p))
        side = atomic_write_bytes(tmp_path / "f.json", b"{}")
    finally:
        os.umask(old)
    want = 0o666 & ~umask
    assert stat.S_IMODE(feats.stat().st_mode) == want
    assert stat.S_IMODE(side.stat().st_mode) == want
