"""The paper's Fig. 3 and what the paper did not show, from any run whose models have families and whose language
models have a language-modelling score (e.g. ``prh align --models published``).

For every vision family, each language model's best-layer-pair alignment to each vision model of the family is drawn
against the language model's performance, 1 − bits-per-byte (the bits per UTF-8 byte of the captions under the
language model, as recorded in its features file: lower bpb is better modelling, so 1 − bpb rises with competence;
the paper's x-axis is this language-modelling score). One line per vision model (its size); its Spearman ρ over the
language models has a percentile bootstrap interval that resamples the language models (the points of the line,
:func:`prh.stats.correlation`). The same is drawn with the calibrated scores (layer-aggregated permutation null) and
for every metric of the run among mutual kNN and unbiased CKA, side by side, so that one sees which trend survives
calibration. Also: the heatmap of the best cross-modal scores (language models × vision models, ordered by family
and size), the relative depth of the best layer of each model in each pair, and the within-family grids.

:func:`update_section` writes it all as the report section ``paper-figures`` (figures under
``<results>/figures``); :func:`fig3_points` and :func:`trends` give the numbers behind the panels.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from prh.align.engine import Results
from prh.errors import InputError
from prh.report import sections as report_sections

#: the metrics Fig. 3 shows, in this order, when the run has them
METRICS = ("mutual_knn", "unbiased_cka")
#: views of each metric: the raw best score and the calibrated score
VIEWS = {"raw": "score", "calibrated": "calibrated_score"}
MIN_LANGUAGE_MODELS = 3
SECTION = "paper-figures"


def _cross(results: Results, metric: str) -> pd.DataFrame:
    """Real cross-modal rows of ``metric``, oriented language (``_l``) × vision (``_v``)."""
    t = results.table
    t = t[(t["metric"] == metric) & (t["control"] == "none") & (t["modality_x"] != t["modality_y"])]
    rows = []
    for _, r in t.iterrows():
        lx = r["modality_x"] == "language"
        side_l, side_v = ("x", "y") if lx else ("y", "x")
        rows.append(
            {
                "language": r[f"model_{side_l}"],
                "vision": r[f"model_{side_v}"],
                "family_l": r[f"family_{side_l}"],
                "family_v": r[f"family_{side_v}"],
                "params_l": r[f"params_{side_l}"],
                "params_v": r[f"params_{side_v}"],
                "bpb": r[f"bpb_{side_l}"],
                "score": r["score"],
                "calibrated_score": r.get("calibrated_score", float("nan")),
                "depth_l": r[f"best_layer_{side_l}"] / max(1, r[f"n_layers_{side_l}"] - 1),
                "depth_v": r[f"best_layer_{side_v}"] / max(1, r[f"n_layers_{side_v}"] - 1),
            }
        )
    return pd.DataFrame(rows)


def applicable(results: Results) -> bool:
    """The run has cross-modal pairs of a Fig. 3 metric whose vision models have families and at least
    :data:`MIN_LANGUAGE_MODELS` language models with bits-per-byte."""
    for metric in METRICS:
        c = _cross(results, metric)
        if c.empty:
            continue
        c = c[c["family_v"].fillna("").astype(str) != ""]
        if c[np.isfinite(c["bpb"].astype(float))]["language"].nunique() >= MIN_LANGUAGE_MODELS:
            return True
    return False


def fig3_points(results: Results, metric: str, view: str = "raw") -> pd.DataFrame:
    """One row per (vision model, language model) of ``metric``: ``family`` (of the vision model), ``vision``,
    ``language``, ``performance`` (1 − bpb of the language model) and ``alignment`` (the best score, or the
    calibrated score for ``view="calibrated"``); language models without bpb and vision models without a family are
    left out. Sorted by family, vision model size, performance."""
    column = VIEWS[view]
    c = _cross(results, metric)
    if c.empty:
        return pd.DataFrame(columns=["family", "vision", "params_v", "language", "performance", "alignment"])
    c = c[(c["family_v"].fillna("").astype(str) != "") & np.isfinite(c["bpb"].astype(float))]
    out = pd.DataFrame(
        {
            "family": c["family_v"].astype(str),
            "vision": c["vision"],
            "params_v": c["params_v"].astype(float),
            "language": c["language"],
            "performance": 1.0 - c["bpb"].astype(float),
            "alignment": c[column].astype(float),
        }
    )
    return out.sort_values(["family", "params_v", "vision", "performance"]).reset_index(drop=True)


def _rho(x: np.ndarray, y: np.ndarray, seed: int) -> tuple[float, float, float]:
    from prh.stats import correlation

    ok = np.isfinite(x) & np.isfinite(y)
    try:
        r = correlation(x[ok], y[ok], method="spearman", B=1000, K=1, seed=seed)
    except InputError:  # fewer than 3 points, or a constant coordinate (e.g. every calibrated score 0)
        return float("nan"), float("nan"), float("nan")
    return r.r, r.ci_low, r.ci_high


def trends(points: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """Spearman ρ of alignment against performance with its 95% bootstrap interval (language models resampled):
    one row per vision model (``line`` = the model) and one per family (``line = "family mean"``: each language
    model's mean alignment over the family's vision models)."""
    rows = []
    for family, group in points.groupby("family", sort=False):
        for vision, line in group.groupby("vision", sort=False):
            rho, low, high = _rho(line["performance"].to_numpy(), line["alignment"].to_numpy(), seed)
            rows.append(
                {"family": family, "line": vision, "n": len(line), "rho": rho, "ci_low": low, "ci_high": high}
            )
        mean = group.groupby("language").agg(
            performance=("performance", "first"), alignment=("alignment", "mean")
        )
        rho, low, high = _rho(mean["performance"].to_numpy(), mean["alignment"].to_numpy(), seed)
        rows.append(
            {
                "family": family,
                "line": "family mean",
                "n": len(mean),
                "rho": rho,
                "ci_low": low,
                "ci_high": high,
            }
        )
    return pd.DataFrame(rows, columns=["family", "line", "n", "rho", "ci_low", "ci_high"])


def _label(name: str) -> str:
    return str(name).removeprefix("published/").removesuffix("_pool-none").removesuffix("_pool-avg")


def _views(results: Results) -> list[tuple[str, str]]:
    metrics = [m for m in METRICS if not _cross(results, m).empty]
    out = []
    for metric in metrics:
        out.append((metric, "raw"))
        if (
            "calibrated_score" in results.table.columns
            and _cross(results, metric)["calibrated_score"].notna().any()
        ):
            out.append((metric, "calibrated"))
    return out


def draw_fig3(results: Results, path: Path) -> dict[tuple[str, str], pd.DataFrame]:
    """Fig. 3: rows = (metric, view), columns = vision families; returns the trend table of each row."""
    from prh._figure import subplots

    views = _views(results)
    families = list(dict.fromkeys(fig3_points(results, views[0][0])["family"]))
    fig, axes = subplots(
        len(views), len(families), figsize=(3.2 * len(families), 2.8 * len(views)), squeeze=False
    )
    out = {}
    for i, (metric, view) in enumerate(views):
        points = fig3_points(results, metric, view)
        table = trends(points)
        out[(metric, view)] = table
        for j, family in enumerate(families):
            ax = axes[i][j]
            group = points[points["family"] == family]
            for vision, line in group.groupby("vision", sort=False):
                line = line.sort_values("performance")
                stat = table[(table["family"] == family) & (table["line"] == vision)].iloc[0]
                ax.plot(
                    line["performance"],
                    line["alignment"],
                    "o-",
                    ms=3,
                    label=f"{_label(vision)} ρ={stat['rho']:.2f}",
                )
            ax.set_title(f"{family} — {metric} ({view})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6, loc="best")
            if i == len(views) - 1:
                ax.set_xlabel("LM performance: 1 − bits-per-byte", fontsize=7)
            if j == 0:
                ax.set_ylabel("alignment (best layer pair)", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return out


def _ordered(c: pd.DataFrame, side: str) -> list[str]:
    key = c.groupby(side).agg(family=(f"family_{side[0]}", "first"), params=(f"params_{side[0]}", "first"))
    key = key.reset_index().sort_values(["family", "params", side])
    return list(key[side])


def _matrix(c: pd.DataFrame, value: str) -> tuple[np.ndarray, list[str], list[str]]:
    rows, cols = _ordered(c, "language"), _ordered(c, "vision")
    m = c.pivot_table(index="language", columns="vision", values=value, aggfunc="first")
    return m.reindex(index=rows, columns=cols).to_numpy(dtype=float), rows, cols


def draw_heatmaps(results: Results, metric: str, path: Path) -> None:
    """Best cross-modal scores and the relative depth of the best layer of each side, language × vision."""
    from prh._figure import subplots

    c = _cross(results, metric)
    panels = [
        ("score", f"best {metric}"),
        ("depth_l", "best LM layer / (L − 1)"),
        ("depth_v", "best vision layer / (L − 1)"),
    ]
    first, rows, cols = _matrix(c, "score")
    fig, axes = subplots(1, 3, figsize=(3 + 0.45 * len(cols) * 3, 2 + 0.3 * len(rows)), squeeze=False)
    for ax, (value, title) in zip(axes[0], panels):
        m = first if value == "score" else _matrix(c, value)[0]
        im = ax.imshow(m, aspect="auto", cmap="viridis", vmin=0.0 if value != "score" else None)
        ax.set_xticks(range(len(cols)), [_label(v) for v in cols], rotation=90, fontsize=6)
        ax.set_yticks(range(len(rows)), [_label(v) for v in rows], fontsize=6)
        ax.set_title(title, fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def within_family(results: Results, metric: str) -> dict[str, pd.DataFrame]:
    """``{family: square DataFrame}`` of the best scores between the models of each family (both orders filled;
    the diagonal as scored), for families with at least two models whose pairs were scored."""
    t = results.table
    t = t[(t["metric"] == metric) & (t["control"] == "none") & (t["family_x"] == t["family_y"])]
    t = t[t["family_x"].fillna("").astype(str) != ""]
    out = {}
    for family, group in t.groupby("family_x"):
        models = list(dict.fromkeys(list(group["model_x"]) + list(group["model_y"])))
        if len(models) < 2:
            continue
        m = pd.DataFrame(np.nan, index=models, columns=models)
        for _, r in group.iterrows():
            m.loc[r["model_x"], r["model_y"]] = r["score"]
            if np.isnan(m.loc[r["model_y"], r["model_x"]]):
                m.loc[r["model_y"], r["model_x"]] = r["score"]
        out[str(family)] = m
    return out


def draw_within(grids: dict[str, pd.DataFrame], metric: str, path: Path) -> None:
    from prh._figure import subplots

    fig, axes = subplots(1, len(grids), figsize=(3.0 * len(grids), 3.0), squeeze=False)
    for ax, (family, m) in zip(axes[0], grids.items()):
        im = ax.imshow(m.to_numpy(dtype=float), cmap="viridis")
        labels = [_label(v) for v in m.index]
        ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
        ax.set_yticks(range(len(labels)), labels, fontsize=6)
        ax.set_title(f"{family} ({metric})", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _interval(row: pd.Series) -> str:
    if not math.isfinite(row["rho"]):
        return "ρ undefined (a constant coordinate)"
    return f"ρ = {row['rho']:.2f} [{row['ci_low']:.2f}, {row['ci_high']:.2f}]"


def findings(tables: dict[tuple[str, str], pd.DataFrame]) -> list[str]:
    """Which trends hold, in words: per metric and view, the families whose family-mean ρ has its 95% interval
    above 0 (the trend holds), and those where it does not, each with ρ and its interval."""
    lines = []
    for (metric, view), table in tables.items():
        mean = table[table["line"] == "family mean"]
        if mean.empty:
            continue
        holds = mean[mean["ci_low"] > 0]
        fails = mean[~(mean["ci_low"] > 0)]
        lines_pos = int(((table["line"] != "family mean") & (table["ci_low"] > 0)).sum())
        lines_all = int((table["line"] != "family mean").sum())
        text = f"{metric}, {view}: alignment rises with LM performance for "
        text += (
            "; ".join(f"{r['family']} ({_interval(r)})" for _, r in holds.iterrows())
            if not holds.empty
            else "no family"
        )
        if not fails.empty:
            text += "; the trend does not hold (interval reaches 0 or below) for "
            text += "; ".join(f"{r['family']} ({_interval(r)})" for _, r in fails.iterrows())
        text += f". Per vision model: {lines_pos} of {lines_all} lines have their interval above 0."
        lines.append(text)
    return lines


def build_section(results: Results, results_dir: str | os.PathLike) -> report_sections.Section:
    """The ``paper-figures`` section (figures written into ``<results_dir>/figures``)."""
    out = Path(results_dir)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    figures: list[report_sections.Figure] = []
    tables = draw_fig3(results, fig_dir / "paper_fig3.png")
    views = ", ".join(f"{m} ({v})" for m, v in tables)
    figures.append(
        report_sections.Figure(
            "figures/paper_fig3.png",
            f"Rows: {views}; columns: vision families. x: the language model's 1 − bits-per-byte from its file; "
            "y: its best-layer-pair alignment to each vision model (one line per vision model, ρ: Spearman over the "
            "language models).",
            "Fig. 3: alignment to each vision family vs language-model performance",
        )
    )
    metric = next(m for m, _ in tables)
    draw_heatmaps(results, metric, fig_dir / "paper_heatmaps.png")
    figures.append(
        report_sections.Figure(
            "figures/paper_heatmaps.png",
            f"Language models (rows) × vision models (columns), ordered by family and size: the best {metric} over "
            "all layer pairs, and where it is found — the best layer's relative depth in each model (0 = first, "
            "1 = last).",
            "Best cross-modal scores and best-layer depths",
        )
    )
    grids = within_family(results, metric)
    if grids:
        draw_within(grids, metric, fig_dir / "paper_within_family.png")
        figures.append(
            report_sections.Figure(
                "figures/paper_within_family.png",
                f"The best {metric} between the models of each family.",
                "Within-family grids",
            )
        )
    trend_tables = [
        report_sections.Table(f"Spearman ρ — {m} ({v})", t.round(3)) for (m, v), t in tables.items()
    ]
    paragraphs = [
        "x-axis: language-modelling performance 1 − bits-per-byte, from each language model's features file (bpb of "
        "the captions; lower bpb is better modelling). Intervals: 95% percentile bootstrap over the language "
        "models (B = 1000). Calibrated: the score above the layer-aggregated permutation null's (1 − α) quantile, "
        "scaled (docs/statistics.md); 0 where the pair is not significant.",
    ]
    return report_sections.Section(
        name=SECTION,
        title="The paper's figures: alignment vs language-model performance",
        order=20,
        paragraphs=paragraphs,
        findings=findings(tables),
        figures=figures,
        tables=trend_tables,
    )


def update_section(results: Results, results_dir: str | os.PathLike) -> bool:
    """(Re)write the ``paper-figures`` section when the run qualifies (:func:`applicable`); False otherwise."""
    if not applicable(results):
        return False
    report_sections.write_section(results_dir, build_section(results, results_dir))
    return True


__all__ = [
    "applicable",
    "build_section",
    "fig3_points",
    "findings",
    "trends",
    "update_section",
    "within_family",
]
