"""Build the report of a results folder: figures (PNG), report.html and report.md."""

from __future__ import annotations

import html
import os
from pathlib import Path

import pandas as pd

from prh.align.engine import Results
from prh.atomic import atomic_write_text
from prh.data import credit as data_credit
from prh.errors import InputError
from prh.report import competence as report_competence
from prh.report import figures
from prh.report import findings as report_findings
from prh.report import paper as report_paper
from prh.report import sections as report_sections
from prh.report._imported import imported_section


def summary_lines(results: Results, metric: str = "mutual_knn") -> list[str]:
    """The findings in short lines for the terminal: best cross-modal pair, the shuffled control, chance level,
    significance (the report's own section is :mod:`prh.report.findings`)."""
    t = results.table
    lines = []
    main = t[(t["metric"] == metric) & (t["control"] == "none")]
    cross = main[main["modality_x"] != main["modality_y"]]
    if not cross.empty:
        best = cross.loc[cross["score"].idxmax()]
        interval = (
            f", 95% interval {best['ci_low']:.3f}–{best['ci_high']:.3f} at these layers"
            if pd.notna(best.get("ci_low", float("nan")))
            else ""
        )
        lines.append(
            f"Best cross-modal {metric}: {best['model_x']} × {best['model_y']} = {best['score']:.3f} "
            f"(layers {int(best['best_layer_x'])} and {int(best['best_layer_y'])}{interval}), N={int(best['N'])}."
        )
        chance = figures.chance_level(metric, best["k"], best["N"])
        if chance is not None:
            lines.append(
                f"Chance level {chance[1]} = {chance[0]:.4f}; the best pair is {best['score'] / chance[0]:.1f}× chance."
            )
        control = t[(t["metric"] == metric) & (t["control"] != "none")]
        control = control[control["modality_x"] != control["modality_y"]]
        if not control.empty:
            lines.append(
                f"Control with captions shuffled: best {control['score'].max():.3f}, mean {control['score'].mean():.3f} "
                f"(real pairing: mean {cross['score'].mean():.3f}; best/control-best = "
                f"{best['score'] / control['score'].max():.1f}×)."
            )
        if "p_value" in cross.columns and cross["p_value"].notna().any():
            alpha = float(results.provenance.get("alpha", 0.05))
            sig = int((cross["p_value"] <= alpha).sum())
            k_perm = results.provenance.get("calibrate_K")
            lines.append(
                f"{sig} of {len(cross)} cross-modal pairs are significant at alpha={alpha} "
                f"(layer-max permutation null, K={k_perm}); calibrated scores range "
                f"{cross['calibrated_score'].min():.3f}–{cross['calibrated_score'].max():.3f}."
            )
    return lines


_MD_SPECIAL = str.maketrans({c: "\\" + c for c in "\\`*_[]|#"})


def md_text(value: object) -> str:
    """``value`` as literal markdown text: HTML escaped (``<script>`` shows as text, as in report.html) and the
    characters markdown would read as markup (emphasis, code, links, table cells) backslash-escaped."""
    return html.escape(str(value), quote=False).translate(_MD_SPECIAL)


def _table_md(df: pd.DataFrame) -> str:
    """A results table as markdown, its text cells (model names, modalities, layers) escaped."""
    df = df.copy()
    for col in df.columns:
        if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
            df[col] = df[col].map(lambda v: md_text(v) if isinstance(v, str) else v)
    return df.to_markdown(index=False, floatfmt=".4g")


def _table_html(df: pd.DataFrame) -> str:
    return df.to_html(index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="results", na_rep="")


def _top_table(results: Results, metric: str) -> pd.DataFrame:
    t = results.table
    main = t[(t["metric"] == metric) & (t["control"] == "none") & (t["model_x"] != t["model_y"])]
    cols = ["model_x", "model_y", "modality_x", "modality_y", "score", "best_layer_x", "best_layer_y"]
    cols += [c for c in ("p_value", "calibrated_score", "ci_low", "ci_high") if c in t.columns]
    return main.sort_values("score", ascending=False)[cols]


def build_report(
    results_dir: str | os.PathLike, metric: str | None = None, world_dir: str | None = None
) -> Path:
    """Draw every figure for ``results_dir`` (written by :meth:`Results.save`) and write report.html/report.md.

    Returns the path of report.html. Figures go to ``<results_dir>/figures``.
    """
    out = Path(results_dir)
    if out.exists() and not out.is_dir():
        raise InputError(
            f"results folder {out} is a file, not a folder; give the folder `prh align --out` wrote."
        )
    if not out.is_dir():
        raise InputError(
            f"results folder {out} does not exist; run `prh align --out {out}` or `prh demo` first."
        )
    fragments = report_sections.read_sections(out)  # sections/*.html written by e.g. `prh experiment`
    if fragments and not (out / "results.parquet").is_file():
        return report_sections.write_sections_page(out)
    results = Results.load(out)
    metrics = list(dict.fromkeys(results.table["metric"]))
    metric = metric or ("mutual_knn" if "mutual_knn" in metrics else metrics[0])
    if metric not in metrics:
        raise InputError(f"metric {metric!r} is not in these results (they hold {metrics}).")
    if report_competence.update_section(results, out, metric):  # measured competence: probes, Fig. 2 / Fig. 4
        fragments = report_sections.read_sections(out)
    if report_paper.update_section(results, out):  # models with families and bpb: Fig. 3, raw and calibrated
        fragments = report_sections.read_sections(out)
    measured = report_competence.load_measured(out)
    fig_dir = out / "figures"
    fig_dir.mkdir(exist_ok=True)
    alpha = float(results.provenance.get("alpha", 0.05))
    sections: list[tuple[str, str, str]] = []  # (title, file, caption)

    def add(title: str, name: str, draw) -> None:
        caption = draw(fig_dir / name)
        if caption:
            sections.append((title, f"figures/{name}", caption))

    for m in metrics:
        add(
            f"Cross-modal alignment — {m}",
            f"cross_modal_{m}.png",
            lambda p, m=m: figures.cross_modal_heatmap(results, m, p, alpha),
        )
    add(
        "Language models among themselves",
        f"within_language_{metric}.png",
        lambda p: figures.within_modality_heatmap(results, metric, "language", p, alpha),
    )
    add(
        "Vision models among themselves",
        f"within_vision_{metric}.png",
        lambda p: figures.within_modality_heatmap(results, metric, "vision", p, alpha),
    )
    add(
        "Alignment vs competence",
        f"competence_{metric}.png",
        lambda p: report_competence.competence_plot(results, metric, p, measured),
    )
    add(
        "Layer-pair grid of the best pair",
        f"best_grid_{metric}.png",
        lambda p: figures.best_pair_grid(results, metric, p),
    )
    add("Map of the models", f"model_map_{metric}.png", lambda p: figures.model_map(results, metric, p))
    add(
        "Control: shuffled captions",
        f"control_{metric}.png",
        lambda p: figures.control_plot(results, metric, p),
    )

    findings = report_findings.findings_section(results, out, metric)  # (markdown, html) or None
    top = report_competence.flag_input_pairs(_top_table(results, metric), results)
    prov = results.provenance
    dataset = prov.get("dataset") or {}
    world = Path(world_dir) if world_dir else out / "world"
    world_link = (
        world / "world.html"
        if (world / "world.html").is_file()
        else (world / "world.json" if (world / "world.json").is_file() else None)
    )

    body = [
        "<h1>prh alignment report</h1>",
        f"<p class='meta'>dataset <b>{html.escape(str(dataset.get('name', '?')))}</b>, N={prov.get('N')}, "
        f"fingerprint <code>{html.escape(str(dataset.get('fingerprint', '?'))[:16])}</code>; metrics "
        f"{html.escape(', '.join(metrics))}; k={prov.get('k')}; permutations K={prov.get('calibrate_K')}; "
        f"prh {html.escape(str(prov.get('prh_version')))}, {html.escape(str(prov.get('created')))}</p>",
    ]
    if findings is not None:
        body.append("<h2>Findings</h2>" + findings[1])
    for title, src, caption in sections:
        body.append(
            f"<h2>{html.escape(title)}</h2><figure><img src='{src}' alt='{html.escape(title)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    body.append(f"<h2>All model pairs ({html.escape(metric)})</h2>" + _table_html(top))
    imported = imported_section(results)  # imported models: sources, shared items, noise ceilings
    if imported is not None:
        body.append(imported[0])
    body += [f.html for f in fragments]
    if world_link is not None:
        body.append(
            f"<h2>The idealized world (Section 5)</h2><p>See <a href='{os.path.relpath(world_link, out)}'>"
            "the PMI-kernel simulation</a>.</p>"
        )
    body.append(
        "<h2>Files</h2><p><a href='results.csv'>results.csv</a> · <a href='results.parquet'>results.parquet</a>"
        " · <a href='grids.safetensors'>grids.safetensors</a> · <a href='provenance.json'>provenance.json</a>"
        " · <a href='report.md'>report.md</a></p>"
    )
    credit = data_credit(str(dataset.get("name", "")))
    if credit:
        body.append(f"<p class='meta'>{html.escape(credit)}</p>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>prh report</title><style>"
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
        "img{max-width:100%;border:1px solid #ddd}figcaption{font-size:.9em;color:#555;margin:.3em 0 1.5em}"
        "table.results{border-collapse:collapse;font-size:.85em}table.results td,table.results th{padding:2px 8px;"
        "border-bottom:1px solid #eee;text-align:right}.meta{color:#666;font-size:.9em}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )
    atomic_write_text(out / "report.html", page)

    md = [
        "# prh alignment report",
        "",
        f"Dataset {md_text(dataset.get('name', '?'))}, N={prov.get('N')}, metrics {md_text(', '.join(metrics))}.",
        "",
    ]
    if findings is not None:
        md += ["## Findings", "", findings[0]]
    for title, src, caption in sections:
        md += [f"## {title}", "", f"![{title}]({src})", "", caption, ""]
    md += [
        f"## All model pairs ({metric})",
        "",
        _table_md(top),
        "",
    ]
    if imported is not None:
        md.append(imported[1])
    md += [f.markdown for f in fragments if f.markdown]
    atomic_write_text(out / "report.md", "\n".join(md))
    return out / "report.html"


__all__ = ["build_report", "summary_lines"]
