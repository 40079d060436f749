"""The report's view of measured competence: transfer probes, the paper's Fig. 2 and Fig. 4, input-layer flags.

Reads ``<results>/competence/`` (written by ``prh competence`` / ``prh demo``: :class:`prh.competence.
CompetenceResults`) and, when the folder also holds an alignment run, combines the two:

- probe accuracies with intervals and the label-shuffled control; k-NN accuracy layer by layer;
- Fig. 2: models bucketed by measured competence with the mean alignment within each bucket, and a 2-D map of the
  models coloured by competence; best pairs at an input layer are excluded (``skip_input_layers`` of the run);
- Fig. 4: each language model's alignment to the vision side against each attached downstream score, with
  Pearson/Spearman, bootstrap intervals and permutation p-values (:func:`prh.stats.correlation`);
- the pairs whose best layer pair is an input layer, with their score over the learned layers;
- :func:`competence_plot`, the report's alignment-vs-competence panels with measured competence where present.

Everything is rendered as one :class:`~prh.report.sections.Section` named ``competence``
(:func:`update_section`), rebuilt from the data each time the report is built. Every panel states its n and says
when n is too small for a claim.

One file, over the usual ~450 lines, on purpose: its tables and figures all read the same competence folder and
alignment run through the same lookups (model groups, best layers, input-layer flags), so the view stays consistent
with itself.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from prh._figure import subplots
from prh.align.engine import Results
from prh.competence import (
    CompetenceResults,
    competence_buckets,
    coverage_lines,
    distance_matrix,
    downstream_alignment,
    effective_pairs,
    input_layers,
    map_coordinates,
)
from prh.report import figures
from prh.report import sections as report_sections

#: Sub-folder of a results folder that holds the competence tables.
COMPETENCE_DIR = "competence"
SECTION_NAME = "competence"
SECTION_ORDER = 10
#: Fewer models than this cannot show a trend over buckets (three buckets of two models each).
MIN_MODELS_FOR_TREND = 6
#: The competence figure of the Fig. 2 view and the measured panels: the linear probe at its best layer.
COMPETENCE_PROBE = ("linear", "best", "accuracy")
_COLORS = {"language": "tab:orange", "vision": "tab:blue"}


def load_measured(results_dir: str | os.PathLike) -> CompetenceResults | None:
    """The competence results of a results folder, or None when it holds none."""
    folder = Path(results_dir) / COMPETENCE_DIR
    if not (folder / "probes.csv").is_file():
        return None
    return CompetenceResults.load(folder)


def _fmt(v: float) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v:.3f}"


def _interval(row: pd.Series, prefix: str = "") -> str:
    mean, low, high = row[f"{prefix}accuracy"], row[f"{prefix}ci_low"], row[f"{prefix}ci_high"]
    return f"{_fmt(mean)} [{_fmt(low)}, {_fmt(high)}]"


def probe_table(measured: CompetenceResults) -> pd.DataFrame:
    """One row per model: k-NN and linear accuracy (last and best layer) with intervals, and the control."""
    t = measured.table
    rows = []
    for model in dict.fromkeys(t["model"]):
        sub = t[t["model"] == model]
        get = {(r["probe"], r["layer_choice"]): r for _, r in sub.iterrows()}
        best = get.get(("linear", "best"))
        if best is None:
            continue
        rows.append(
            {
                "model": model,
                "modality": best["modality"],
                "n": int(best["n"]),
                "classes": int(best["n_classes"]),
                "k-NN last": _interval(get[("knn", "last")]),
                "k-NN best": _interval(get[("knn", "best")]),
                "linear last": _interval(get[("linear", "last")]),
                "linear best": _interval(best),
                "best layer": f"{best['layer_name']} ({best['layers_selected']})",
                "control (shuffled), balanced": (
                    f"{_fmt(best['control_balanced_accuracy'])} [{_fmt(best['control_balanced_ci_low'])}, "
                    f"{_fmt(best['control_balanced_ci_high'])}]"
                ),
                "chance 1/C": _fmt(best["chance_balanced"]),
            }
        )
    return pd.DataFrame(rows)


def probe_figure(measured: CompetenceResults, path: Path) -> str | None:
    """Probe accuracy per model (k-NN and linear, best layer, with intervals) and the control against chance."""
    t = measured.table
    best = t[t["layer_choice"] == "best"]
    models = list(dict.fromkeys(best.sort_values(["modality", "model"])["model"]))
    if not models:
        return None
    fig, (ax, bx) = subplots(1, 2, figsize=(max(8.0, 1.6 * len(models) + 3), 4.2))
    pos = np.arange(len(models))
    for offset, probe in ((-0.2, "knn"), (0.2, "linear")):
        sub = best[best["probe"] == probe].set_index("model").loc[models]
        err = [sub["accuracy"] - sub["ci_low"], sub["ci_high"] - sub["accuracy"]]
        ax.bar(pos + offset, sub["accuracy"], 0.4, yerr=err, capsize=3, label=f"{probe} (best layer)")
        last = t[(t["probe"] == probe) & (t["layer_choice"] == "last")].set_index("model").loc[models]
        ax.scatter(pos + offset, last["accuracy"], marker="_", s=200, color="black", zorder=4)
    ax.axhline(float(best["majority_rate"].iloc[0]), color="gray", ls=":", lw=1, label="majority-class rate")
    ax.set_xticks(pos, models, rotation=40, ha="right", fontsize=8)
    ax.set_ylabel("accuracy (5-fold CV)" if measured.config.folds == 5 else "accuracy (CV)")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, loc="upper left")
    n, c = int(best["n"].iloc[0]), int(best["n_classes"].iloc[0])
    ax.set_title(f"transfer probes: n={n} items, {c} classes (black tick: last layer)", fontsize=9)
    lin = best[best["probe"] == "linear"].set_index("model").loc[models]
    bx.bar(
        pos - 0.2,
        lin["balanced_accuracy"],
        0.4,
        label="real labels",
        yerr=[
            lin["balanced_accuracy"] - lin["balanced_ci_low"],
            lin["balanced_ci_high"] - lin["balanced_accuracy"],
        ],
        capsize=3,
    )
    bx.bar(
        pos + 0.2,
        lin["control_balanced_accuracy"],
        0.4,
        color="tab:gray",
        label="labels shuffled (control)",
        yerr=[
            lin["control_balanced_accuracy"] - lin["control_balanced_ci_low"],
            lin["control_balanced_ci_high"] - lin["control_balanced_accuracy"],
        ],
        capsize=3,
    )
    bx.axhline(1.0 / c, color="black", ls="--", lw=1, label=f"chance 1/C = {1.0 / c:.3f}")
    bx.set_xticks(pos, models, rotation=40, ha="right", fontsize=8)
    bx.set_ylabel("balanced accuracy, linear probe")
    bx.set_ylim(0, 1)
    bx.legend(fontsize=7, loc="upper left")
    bx.set_title(f"label-shuffled control ({measured.config.shuffles} shuffle(s)), n={n}", fontsize=9)
    figures.save_figure(fig, path)
    return (
        f"Transfer probes on {measured.provenance.get('labels', {}).get('name', 'the labels')}: k-NN (k="
        f"{measured.config.k}) and logistic-regression accuracy at the best layer (chosen inside each training fold) "
        "with 95% intervals over the folds (Nadeau-Bengio corrected); black ticks mark the last layer. Right: "
        "balanced accuracy with the real labels and with the labels shuffled, whose expectation is exactly 1/C."
    )


def layer_figure(measured: CompetenceResults, path: Path) -> str | None:
    """k-NN accuracy of every layer of every model against relative depth; input layers hollow."""
    layers = measured.layers
    if layers.empty:
        return None
    fig, axes = subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, modality in zip(axes, ("vision", "language")):
        sub = layers[layers["modality"] == modality]
        for model in dict.fromkeys(sub["model"]):
            m = sub[sub["model"] == model].sort_values("layer")
            depth = m["layer"] / max(1, len(m) - 1)
            line = ax.plot(depth, m["knn_accuracy"], marker="o", ms=3, lw=1, label=model)[0]
            inputs = m[m["input_layer"].astype(bool)]
            ax.scatter(
                inputs["layer"] / max(1, len(m) - 1),
                inputs["knn_accuracy"],
                s=40,
                facecolors="white",
                edgecolors=line.get_color(),
                zorder=4,
            )
        if not sub.empty:
            ax.plot(
                [0, 1],
                [sub["control_knn_accuracy"].mean()] * 2,
                color="gray",
                ls=":",
                lw=1,
                label="control (shuffled)",
            )
            ax.legend(fontsize=6)
        ax.set_xlabel("relative depth (0 = first stored layer)")
        n_items = int(measured.table["n"].iloc[0]) if not measured.table.empty else 0
        ax.set_title(
            f"{modality} models (n={sub['model'].nunique()}): k-NN accuracy per layer, {n_items} items",
            fontsize=9,
        )
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("k-NN accuracy (CV)")
    figures.save_figure(fig, path)
    return (
        "k-NN probe accuracy of every stored layer (outer folds, real labels); hollow markers are input layers "
        "(stem / token embeddings), the dotted line the shuffled-label control."
    )


def _modality_of(results: Results) -> dict[str, str]:
    out: dict[str, str] = {}
    for side in ("x", "y"):
        for m, mod in zip(results.table[f"model_{side}"], results.table[f"modality_{side}"]):
            out[str(m)] = str(mod)
    return out


def bucket_figure(
    results: Results, measured: CompetenceResults, metric: str, path: Path
) -> tuple[str | None, list]:
    """Fig. 2 (left): per modality, mean alignment among the models of each competence bucket."""
    skip = bool(measured.config.skip_input_layers)
    pairs = effective_pairs(results, metric, skip_input_layers=skip)
    competence = measured.competence(*COMPETENCE_PROBE)
    modality = _modality_of(results)
    panels = []
    for mod in ("vision", "language"):
        models = [m for m, x in modality.items() if x == mod and m in competence]
        if len(models) >= 2:
            panels.append((mod, models, competence_buckets(pairs, competence, models)))
    if not panels:
        return None, []
    fig, axes = subplots(1, len(panels), figsize=(5.2 * len(panels), 4.0), squeeze=False)
    for ax, (mod, models, buckets) in zip(axes.flat, panels):
        pos = np.arange(len(buckets))
        ax.bar(pos, buckets["mean_alignment"].fillna(0.0), color=_COLORS.get(mod, "gray"))
        for i, r in buckets.iterrows():
            text = f"{r['n_models']} models\n{r['n_pairs']} pair(s)" if r["n_pairs"] else "no pair"
            ax.text(
                i,
                (0 if np.isnan(r["mean_alignment"]) else r["mean_alignment"]) + 0.01,
                text,
                ha="center",
                fontsize=7,
            )
        ax.set_xticks(
            pos,
            [f"{r['competence_low']:.2f}–{r['competence_high']:.2f}" for _, r in buckets.iterrows()],
            fontsize=8,
        )
        top = float(np.nanmax(buckets["mean_alignment"])) if buckets["mean_alignment"].notna().any() else 1.0
        ax.set_ylim(0, 1.25 * top)
        ax.set_xlabel("bucket: linear-probe accuracy (measured)")
        ax.set_ylabel(f"mean {metric} within bucket")
        n = len(models)
        claim = "" if n >= MIN_MODELS_FOR_TREND else f": too few for a trend ({MIN_MODELS_FOR_TREND} needed)"
        ax.set_title(f"{mod} models, n={n} in {len(buckets)} bucket(s){claim}", fontsize=8.5)
        ax.grid(alpha=0.3, axis="y")
    figures.save_figure(fig, path)
    caption = (
        f"Fig. 2 view (the paper: 78 vision models, VTAB competence): models sorted by measured competence "
        f"(linear-probe accuracy) into equal-count buckets; each bar is the mean best-layer {metric} among the models "
        f"of one bucket. "
        + (
            "Best pairs at an input layer (stem, token embeddings) are replaced by the best pair over the learned "
            "layers. "
            if skip
            else "Input layers are kept (--keep-input-layers). "
        )
        + "Convergence predicts the bars to rise from left to right. "
        + _n_statement([(mod, len(models)) for mod, models, _ in panels], "a trend")
    )
    return caption, [(mod, b) for mod, _, b in panels]


def _n_statement(counts: list[tuple[str, int]], what: str) -> str:
    """``"n = 4 vision models (too few for clusters: 6 needed), n = 7 language models."``"""
    parts = []
    for mod, n in counts:
        few = f" (too few for {what}: {MIN_MODELS_FOR_TREND} needed)" if n < MIN_MODELS_FOR_TREND else ""
        parts.append(f"n = {n} {mod} models{few}")
    return "; ".join(parts) + "."


def map_figure(results: Results, measured: CompetenceResults, metric: str, path: Path) -> str | None:
    """Fig. 2 (right): per modality, a 2-D map of the models (1 - alignment), coloured by measured competence."""
    pairs = effective_pairs(results, metric, skip_input_layers=bool(measured.config.skip_input_layers))
    competence = measured.competence(*COMPETENCE_PROBE)
    modality = _modality_of(results)
    panels = []
    for mod in ("vision", "language"):
        models = sorted(m for m, x in modality.items() if x == mod)
        dist = distance_matrix(pairs, models)
        if len(models) >= 3 and np.isfinite(dist).all():
            panels.append((mod, models, *map_coordinates(dist, seed=measured.config.seed)))
    if not panels:
        return None
    values = [v for v in competence.values() if np.isfinite(v)]
    vmin, vmax = (min(values), max(values)) if values else (0.0, 1.0)
    fig, axes = subplots(1, len(panels), figsize=(5.8 * len(panels), 4.4), squeeze=False)
    methods = set()
    for ax, (mod, models, xy, method) in zip(axes.flat, panels):
        methods.add(method)
        colours = np.asarray([competence.get(m, np.nan) for m in models], dtype=float)
        known = np.isfinite(colours)
        scatter = ax.scatter(
            xy[known, 0],
            xy[known, 1],
            c=colours[known],
            cmap="viridis",
            vmin=vmin,
            vmax=vmax,
            s=70,
            edgecolors="black",
            linewidths=0.5,
        )
        ax.scatter(xy[~known, 0], xy[~known, 1], color="lightgray", s=70, edgecolors="black", linewidths=0.5)
        offsets = figures.label_offsets(xy)
        for i, name in enumerate(models):
            ax.annotate(name, xy[i], fontsize=7, xytext=(4, offsets[i]), textcoords="offset points")
        ax.margins(0.3)
        n = len(models)
        claim = (
            "" if n >= MIN_MODELS_FOR_TREND else f"\ntoo few to read clusters ({MIN_MODELS_FOR_TREND} needed)"
        )
        ax.set_title(f"{mod} models ({method} on 1 - {metric}), n={n}{claim}", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(scatter, ax=ax, shrink=0.8, label="linear-probe accuracy (measured)")
    figures.save_figure(fig, path)
    return (
        f"Fig. 2 view, right: the models of each modality placed so that distances approximate 1 - {metric} "
        f"({' / '.join(sorted(methods))}), coloured by measured competence (grey: not probed). The paper's UMAP "
        "shows the competent models in a tight cluster. "
        + _n_statement([(mod, len(models)) for mod, models, _, _ in panels], "clusters")
    )


def downstream_figure(
    results: Results, measured: CompetenceResults, metric: str, path: Path
) -> tuple[str | None, pd.DataFrame]:
    """Fig. 4: alignment of each language model to the vision side against each downstream score."""
    if measured.downstream.empty:
        return None, pd.DataFrame()
    reference = (measured.provenance.get("views") or {}).get("reference_vision")
    pairs = effective_pairs(results, metric, skip_input_layers=bool(measured.config.skip_input_layers))
    table = downstream_alignment(pairs, measured.downstream, _modality_of(results), reference)
    if table.empty:
        return None, table
    groups = list(table.groupby(["task", "metric"], sort=True))[:6]
    cols = min(3, len(groups))
    rows = -(-len(groups) // cols)
    fig, axes = subplots(rows, cols, figsize=(5.0 * cols, 4.2 * rows), squeeze=False)
    for ax in axes.flat[len(groups) :]:
        ax.remove()
    target = f"alignment to {reference}" if reference else "mean alignment to the vision models"
    for ax, ((task, met), sub) in zip(axes.flat, groups):
        figures._scatter_with_fit(
            ax,
            sub["alignment"].to_numpy(float),
            sub["value"].to_numpy(float),
            list(sub["model"]),
            f"{target} ({metric})",
            f"{task} {met}",
            seed=measured.config.seed,
        )
    figures.save_figure(fig, path)
    return (
        f"Fig. 4 view: each language model's {target} ({metric}, best layer pair) against its downstream score, one "
        "panel per task and metric; Pearson and Spearman correlations with 95% bootstrap intervals and permutation "
        "p-values over the models (n stated in each panel)."
    ), table


def input_layer_figure(pairs: pd.DataFrame, metric: str, path: Path) -> str | None:
    """The pairs whose best layer pair is at an input layer: that score and the best over the learned layers."""
    flagged = pairs[pairs["input_pair"]]
    if flagged.empty:
        return None
    labels = [f"{x} × {y}" for x, y in zip(flagged["model_x"], flagged["model_y"])]
    fig, ax = subplots(figsize=(6.2, 0.5 * len(flagged) + 1.6))
    pos = np.arange(len(flagged))
    ax.barh(
        pos + 0.2,
        flagged["score_all_layers"],
        0.4,
        color="tab:red",
        label="best pair, at an input layer (all layers)",
    )
    learned = flagged["score"].where(flagged["excluded"])
    ax.barh(pos - 0.2, learned.fillna(0.0), 0.4, color="tab:green", label="best pair over the learned layers")
    ax.set_yticks(pos, labels, fontsize=7)
    ax.set_xlabel(f"best-layer {metric}")
    ax.legend(fontsize=7)
    ax.set_title(f"{len(flagged)} pair(s) whose best layer pair is an input layer", fontsize=9)
    figures.save_figure(fig, path)
    return (
        "A best layer pair at an input layer (a CNN stem, token embeddings) measures the statistics of the inputs, "
        "not learned representations; the Fig. 2 view uses the best pair over the learned layers instead."
    )


def flag_input_pairs(top: pd.DataFrame, results: Results) -> pd.DataFrame:
    """``top`` (rows of model pairs with best_layer_x/y) with an ``input layer`` column: which side's best layer is
    an input layer (``"x"``, ``"y"``, ``"both"``, empty)."""
    if top.empty or "best_layer_x" not in top.columns:
        return top
    names = {
        m: (info or {}).get("layer_names") for m, info in (results.provenance.get("models") or {}).items()
    }
    flags = []
    for x, y, bx, by in zip(top["model_x"], top["model_y"], top["best_layer_x"], top["best_layer_y"]):
        fx = int(bx) in input_layers(names.get(x))
        fy = int(by) in input_layers(names.get(y))
        flags.append("both" if fx and fy else ("x" if fx else ("y" if fy else "")))
    out = top.copy()
    out["input layer"] = flags
    return out


def competence_plot(
    results: Results, metric: str, path: Path, measured: CompetenceResults | None = None
) -> str | None:
    """The report's alignment-vs-competence panels, with measured competence (linear-probe accuracy) on the x axis
    where it is present and the reported figures (bits per byte, parameters) as before; without measured
    competence it is :func:`prh.report.figures.competence_plot`."""
    if measured is None or measured.table.empty:
        return figures.competence_plot(results, metric, path)
    competence = measured.competence(*COMPETENCE_PROBE)
    panels = []
    for mod in ("language", "vision"):
        df = figures.mean_cross_modal(results.table, metric, mod)
        df["measured"] = df["model"].map(competence)
        if df["measured"].notna().sum() >= 2:
            panels.append((df, "measured", "linear-probe accuracy (measured)", mod))
    lang = figures.mean_cross_modal(results.table, metric, "language")
    vis = figures.mean_cross_modal(results.table, metric, "vision")
    if lang["bpb"].notna().sum() >= 2:
        panels.append((lang, "bpb", "bits per byte (lower = better language model)", "language"))
    if not any(p[3] == "vision" for p in panels) and vis["imagenet_top1"].notna().sum() >= 2:
        panels.append((vis, "imagenet_top1", "reported ImageNet top-1 (%)", "vision"))
    for df, mod in ((lang, "language"), (vis, "vision")):
        if df["params"].notna().sum() >= 2:
            panels.append((df, "params", "parameters (log scale)", mod))
    if not panels:
        return None
    figures.competence_panels(panels, metric, path)
    return (
        f"Alignment vs competence ({metric}): each point is one model's mean best-layer alignment to the models of "
        "the other modality, against its measured competence (linear-probe accuracy, `prh competence`) and its "
        "reported figures. With few models the intervals are wide: read the sign, not the decimals."
    )


def build_section(
    results: Results | None, measured: CompetenceResults, out: Path, metric: str | None
) -> report_sections.Section:
    """The ``competence`` section of a results folder: probes, and with an alignment run the Fig. 2/Fig. 4 views."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    section = report_sections.Section(
        SECTION_NAME, "Measured competence (transfer probes)", order=SECTION_ORDER
    )
    cfg = measured.config
    section.paragraphs.append(
        f"Competence measured on stored features instead of quoted: k-NN (k={cfg.k}) and logistic-regression "
        f"(C={cfg.C}) probes of every model on the same labels, {cfg.folds}-fold stratified cross-validation "
        f"(x{cfg.repeats}), the best layer chosen inside each training fold"
        + (" among the learned layers (input layers left out)" if cfg.skip_input_layers else "")
        + f", and a control with the labels shuffled ({cfg.shuffles}x). See docs/competence.md."
    )
    probed_on = (measured.provenance.get("dataset") or {}).get("name", "?")
    aligned_on = (
        (results.provenance.get("dataset") or {}).get("name") if results is not None else None
    ) or "-"
    section.paragraphs.append(
        f"Competence was measured on {probed_on} (labels {measured.provenance.get('labels', {}).get('name', '?')}); "
        + (f"alignment on {aligned_on}." if results is not None else "no alignment run in this folder.")
    )
    section.findings += coverage_lines(measured)
    section.findings += _probe_findings(measured)
    skipped = measured.provenance.get("skipped") or {}
    section.findings += [f"{m} not probed: {why}." for m, why in skipped.items()]

    def add(title: str, name: str, caption: str | None) -> None:
        if caption:
            section.figures.append(report_sections.Figure(f"figures/{name}", caption, title))

    add(
        "Probe accuracy and the shuffled control",
        "competence_probes.png",
        probe_figure(measured, fig_dir / "competence_probes.png"),
    )
    add(
        "k-NN accuracy layer by layer",
        "competence_layers.png",
        layer_figure(measured, fig_dir / "competence_layers.png"),
    )
    table = probe_table(measured)
    if not table.empty:
        section.tables.append(report_sections.Table("Probe accuracy per model (mean [95% interval])", table))
    if results is not None and metric is not None:
        name = f"competence_fig2_buckets_{metric}.png"
        caption, buckets = bucket_figure(results, measured, metric, fig_dir / name)
        add("Fig. 2 view: alignment within competence buckets", name, caption)
        for mod, frame in buckets:
            section.tables.append(
                report_sections.Table(f"Competence buckets, {mod} models ({metric})", frame)
            )
        name = f"competence_fig2_map_{metric}.png"
        add(
            "Fig. 2 view: map of the models coloured by competence",
            name,
            map_figure(results, measured, metric, fig_dir / name),
        )
        name = f"competence_fig4_{metric}.png"
        caption, fig4 = downstream_figure(results, measured, metric, fig_dir / name)
        add("Fig. 4 view: alignment to vision vs downstream scores", name, caption)
        if not fig4.empty:
            section.tables.append(report_sections.Table("Downstream scores and alignment", fig4))
        pairs = effective_pairs(results, metric, skip_input_layers=True)
        name = f"competence_input_layers_{metric}.png"
        add("Best pairs at input layers", name, input_layer_figure(pairs, metric, fig_dir / name))
        flagged = pairs[pairs["input_pair"]]
        if not flagged.empty:
            section.tables.append(
                report_sections.Table(
                    f"Pairs whose best layer pair is an input layer ({metric})",
                    flagged[
                        [
                            "model_x",
                            "model_y",
                            "score_all_layers",
                            "all_best_layer_x",
                            "all_best_layer_y",
                            "score",
                            "best_layer_x",
                            "best_layer_y",
                        ]
                    ].rename(
                        columns={
                            "score": "score (learned layers)",
                            "best_layer_x": "learned best x",
                            "best_layer_y": "learned best y",
                        }
                    ),
                )
            )
    elif not measured.downstream.empty:
        section.findings.append(
            "Downstream scores are attached; the Fig. 4 view needs an alignment run in this folder."
        )
    section.files += [
        (f, f"{COMPETENCE_DIR}/{f}")
        for f in ("probes.csv", "layers.csv", "downstream.csv", "competence.json")
    ]
    return section


def _probe_findings(measured: CompetenceResults) -> list[str]:
    t = measured.table
    best = t[(t["probe"] == "linear") & (t["layer_choice"] == "best")]
    if best.empty:
        return []
    chance = float(best["chance_balanced"].iloc[0])
    inside = int(((t["control_balanced_ci_low"] <= chance) & (chance <= t["control_balanced_ci_high"])).sum())
    top = best.loc[best["accuracy"].idxmax()]
    low = t.loc[t["ci_low"].idxmin()]
    high = t.loc[t["control_ci_high"].idxmax()]
    level = measured.config.level
    return [
        f"Best linear probe: {top['model']} {top['accuracy']:.3f} [{top['ci_low']:.3f}, {top['ci_high']:.3f}] at "
        f"{top['layer_name']}; lowest: {best['accuracy'].min():.3f} (n={int(top['n'])}, {int(top['n_classes'])} "
        f"classes, majority-class rate {float(top['majority_rate']):.3f}).",
        f"Label-shuffled control: balanced accuracy {t['control_balanced_accuracy'].min():.3f}–"
        f"{t['control_balanced_accuracy'].max():.3f} against chance 1/C = {chance:.3f}; its {level:.0%} interval "
        f"contains chance in {inside} of {len(t)} (model, probe, layer) rows ({(1 - level) * len(t):.1f} misses "
        f"expected by chance).",
        f"Lowest real-label lower bound {low['ci_low']:.3f} ({low['model']}, {low['probe']}, {low['layer_choice']} "
        f"layer) vs highest control upper bound {high['control_ci_high']:.3f} ({high['model']}, {high['probe']}): "
        f"every real interval lies above every control interval: {'yes' if low['ci_low'] > high['control_ci_high'] else 'no'}.",
    ]


def update_section(results: Results | None, results_dir: str | os.PathLike, metric: str | None) -> bool:
    """(Re)write the ``competence`` section of a results folder from its competence tables (and its alignment run,
    when ``results`` is given); False when the folder holds no competence results."""
    out = Path(results_dir)
    measured = load_measured(out)
    if measured is None:
        return False
    report_sections.write_section(out, build_section(results, measured, out, metric))
    return True


__all__ = [
    "build_section",
    "competence_plot",
    "flag_input_pairs",
    "load_measured",
    "probe_table",
    "update_section",
]
