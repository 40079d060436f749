"""The README's demo section is generated from a run's results (prh.report.readme), and written atomically."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import prh.atomic
from prh.align import STATS_COLUMNS, TABLE_COLUMNS, Results
from prh.errors import InputError
from prh.report.readme import (
    END_MARKER,
    START_MARKER,
    check_readme,
    demo_numbers,
    format_duration,
    render_demo_block,
    replace_block,
    write_readme,
    write_readme_block,
)

N, K_NN, K_PERM, B = 512, 10, 99, 50
VISION = {"vis-small": 5e6, "vis-large": 2e7}
LANGUAGE = {"enc-a": 2e7, "lm-b": 1.3e8}
ADAPTERS = {
    "vis-small": "torch-module",
    "vis-large": "onnx",
    "enc-a": "hf-text-encoder",
    "lm-b": "hf-causal-lm",
}
TOP1 = {"vis-small": 75.1, "vis-large": 77.6}


def _row(x: str, y: str, score: float, control: str = "none", **stats: float) -> dict:
    modality = {**dict.fromkeys(VISION, "vision"), **dict.fromkeys(LANGUAGE, "language")}
    params = {**VISION, **LANGUAGE}
    row = dict.fromkeys(TABLE_COLUMNS + STATS_COLUMNS, np.nan)
    row.update(
        model_x=x,
        model_y=y,
        modality_x=modality[x],
        modality_y=modality[y],
        family_x=x,
        family_y=y,
        metric="mutual_knn",
        k=K_NN,
        N=N,
        score=score,
        best_layer_x=3,
        best_layer_y=7,
        n_layers_x=10,
        n_layers_y=12,
        params_x=params[x],
        params_y=params[y],
        imagenet_top1_x=TOP1.get(x, np.nan),
        imagenet_top1_y=TOP1.get(y, np.nan),
        control=control,
    )
    row.update(stats)
    return row


@pytest.fixture
def results() -> Results:
    """A small demo-like run: 2 vision x 2 language models, calibrated and with intervals, plus the control."""
    cross = {
        ("vis-small", "enc-a"): 0.1234,
        ("vis-large", "enc-a"): 0.1611,
        ("vis-small", "lm-b"): 0.0712,
        ("vis-large", "lm-b"): 0.0833,
    }
    rows = []
    for i, ((x, y), s) in enumerate(cross.items()):
        p = 1 / (K_PERM + 1) if s > 0.08 else 0.07  # one pair is not significant
        calibrated = s - 0.031 - i / 1000 if p <= 0.05 else 0.0
        rows.append(
            _row(
                x, y, s, p_value=p, tau=0.03, calibrated_score=calibrated, ci_low=s - 0.02, ci_high=s + 0.017
            )
        )
        rows.append(_row(x, y, 0.0141 - i / 1000, "shuffled_captions", p_value=0.4 + i / 10, tau=0.03))
    rows.append(_row("vis-small", "vis-large", 0.45))
    rows.append(_row("enc-a", "lm-b", 0.31))
    provenance = {
        "created": "2025-01-01T00:00:00+00:00",
        "N": N,
        "dataset": {"name": "openmoji-n512", "fingerprint": "abc"},
        "metrics": {"mutual_knn": {"k": K_NN}},
        "k": K_NN,
        "calibrate_K": K_PERM,
        "bootstrap_B": B,
        "alpha": 0.05,
        "controls": ["shuffled_captions"],
        "models": {name: {"adapter": adapter} for name, adapter in ADAPTERS.items()},
    }
    return Results(pd.DataFrame(rows, columns=TABLE_COLUMNS + STATS_COLUMNS), {}, provenance)


README = (
    "# project\n\nintro text that must stay\n\n"
    f"{START_MARKER}\nold numbers pasted by hand: 0.162, 16.6x chance\n{END_MARKER}\n\n## Using it\n\nmore text\n"
)


def _items(text: str) -> list[str]:
    """Paragraphs and bullet items of the markdown, each on one line (the block is wrapped)."""
    return [" ".join(item.split()) for item in re.split(r"\n(?=- )|\n\n", text)]


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"\d+\.\d+", text)]


def test_block_is_replaced_and_text_outside_the_markers_is_untouched(tmp_path, results):
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    write_readme(readme, results, seconds={"total": 694.2, "features": 600, "alignment": 90, "report": 4.2})
    new = readme.read_text(encoding="utf-8")
    before, after = README.split(START_MARKER)[0], README.split(END_MARKER)[1]
    assert new.startswith(before + START_MARKER + "\n") and new.endswith(END_MARKER + after)
    assert "old numbers pasted by hand" not in new
    block = new[len(before) + len(START_MARKER) : -len(END_MARKER + after)]
    assert block == "\n" + render_demo_block(
        results, seconds={"total": 694.2, "features": 600, "alignment": 90, "report": 4.2}
    )
    flat = " ".join(block.split())
    assert "took 11 min 34 s" in flat and "features 10 min 0 s, alignment 1 min 30 s, report 4 s" in flat
    # running it again changes nothing
    write_readme(readme, results, seconds={"total": 694.2, "features": 600, "alignment": 90, "report": 4.2})
    assert readme.read_text(encoding="utf-8") == new


def test_numbers_in_the_text_are_the_numbers_of_the_results(results):
    t = results.table
    text = render_demo_block(results)
    items = _items(text)
    cross = t[(t["control"] == "none") & (t["modality_x"] != t["modality_y"])]
    control = t[t["control"] != "none"]
    best = cross.loc[cross["score"].idxmax()]
    chance = K_NN / (N - 1)

    line = next(s for s in items if s.startswith("- best cross-modal pair"))
    assert f"`{best['model_x']}` × `{best['model_y']}`" in line
    assert f"layers {int(best['best_layer_x'])} and {int(best['best_layer_y'])}" in line
    assert _numbers(line) == [
        round(best["score"], 3),
        round(best["ci_low"], 3),
        round(best["ci_high"], 3),
        round(best["score"] / chance, 1),
    ]
    sig = next(s for s in items if "vision–language pairs are significant" in s)
    n_sig = int((cross["p_value"] <= 0.05).sum())
    assert sig.startswith(f"- {n_sig} of the {len(cross)} vision–language pairs")
    assert f"p from 1/{K_PERM + 1} to 0.07" in sig
    assert f"{cross['calibrated_score'].min():.3f}–{cross['calibrated_score'].max():.3f}" in sig
    groups = next(s for s in items if "sentence encoders" in s)
    enc = cross[(cross["model_y"] == "enc-a")]["score"]
    lm = cross[(cross["model_y"] == "lm-b")]["score"]
    assert "better than the causal LMs" in groups
    assert f"({enc.min():.3f}–{enc.max():.3f} vs {lm.min():.3f}–{lm.max():.3f}" in groups

    ctrl = next(s for s in items if s.startswith("The control"))
    assert _numbers(ctrl) == [
        round(chance, 4),
        round(control["score"].max(), 3),
        round(control["score"].mean(), 3),
        round(cross["score"].mean(), 3),
        round(best["score"] / control["score"].max(), 1),
        0.05,  # a level-0.05 test ...
        round(0.05 * len(control), 1),  # ... rejects about alpha x pairs unrelated pairs by chance
        round(cross["score"].min(), 3),
    ]
    assert "scores above every shuffled one" in ctrl
    assert f"0 of {len(control)} shuffled pairs are significant" in ctrl
    flat = " ".join(items)
    assert f"chance is k/(N−1) = {chance:.4f}" in flat
    assert f"pairs {N} OpenMoji images" in flat and f"K = {K_PERM}" in flat and f"{B} half-size" in flat
    assert "fresh clone" not in flat  # not measured by the run: written only when given

    num = demo_numbers(results)
    assert num.n_significant == n_sig and num.p_floor == pytest.approx(1 / (K_PERM + 1))
    assert num.competence_counts == {
        "vision ImageNet top-1": 2,
        "language parameters": 2,
        "vision parameters": 2,
    }


def test_times_come_from_arguments(results):
    text = render_demo_block(
        results,
        fresh_clone_seconds=694,
        machine="2-core test VM",
        extraction={"vis-small": 70.2, "enc-a": 3.1, "lm-b": 500.4},
    )
    text = " ".join(text.split())
    assert (
        "On a fresh clone with nothing but Python, `make demo` took 11 min 34 s on a 2-core test VM" in text
    )
    assert "took 9 min 34 s in all when they were computed" in text and "slowest `lm-b`, 8 min 20 s" in text
    assert format_duration(8.4) == "8 s" and format_duration(3725) == "1 h 2 min"


def test_the_write_is_atomic(tmp_path, results, monkeypatch):
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(prh.atomic.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_readme(readme, results)
    assert readme.read_text(encoding="utf-8") == README
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]  # no temporary file left behind


@pytest.mark.parametrize(
    "text, missing",
    [
        ("# no markers at all\n", START_MARKER),
        (f"# only the start\n{START_MARKER}\nold\n", END_MARKER),
        (f"{START_MARKER}\n{START_MARKER}\n{END_MARKER}\n", START_MARKER),
    ],
)
def test_a_readme_without_markers_is_a_clear_error(tmp_path, results, text, missing):
    readme = tmp_path / "README.md"
    readme.write_text(text, encoding="utf-8")
    with pytest.raises(InputError, match=re.escape(missing)) as err:
        write_readme_block(readme, render_demo_block(results))
    assert "put a line" in str(err.value)  # says how to fix it
    assert readme.read_text(encoding="utf-8") == text
    with pytest.raises(
        InputError, match=re.escape(missing)
    ):  # what `prh demo --write-readme` checks up front
        check_readme(readme)


def test_end_marker_before_start_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="comes before"):
        replace_block(f"{END_MARKER}\n{START_MARKER}\n", "x")
    with pytest.raises(InputError, match="no such file"):
        write_readme_block(tmp_path / "nope.md", "x")


def test_crlf_readme_keeps_its_line_endings(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_bytes(README.replace("\n", "\r\n").encode())
    write_readme_block(readme, "line one\nline two\n")
    data = readme.read_bytes().decode()
    assert "\r\nline one\r\nline two\r\n" + END_MARKER in data and "\n" not in data.replace("\r\n", "")


def test_results_without_a_cross_modal_pair_are_refused(results):
    t = results.table
    within = Results(t[t["modality_x"] == t["modality_y"]].reset_index(drop=True), {}, results.provenance)
    with pytest.raises(InputError, match="no cross-modal"):
        render_demo_block(within)
