"""The report's part on imported models (`prh import`): where they come from, the items an alignment was restricted
to, and for repeated measurements the noise ceiling with raw and ceiling-normalised scores."""

from __future__ import annotations

import html
import math

import pandas as pd

from prh.align.engine import Results


def ceiling_table(results: Results) -> pd.DataFrame:
    """One row per real pair and metric that involves a model with a noise ceiling: ``score`` (raw), the ceiling of
    each side (NaN without one) and ``normalised`` = score / ceiling (score / sqrt(ceiling_x * ceiling_y) when both
    sides have one; NaN where a ceiling is not positive)."""
    ceilings = results.provenance.get("noise_ceilings") or {}
    t = results.table
    rows = []
    main = t[(t["control"] == "none") & (t["model_x"] != t["model_y"])]
    for _, row in main.iterrows():
        cx = (ceilings.get(row["model_x"]) or {}).get(row["metric"])
        cy = (ceilings.get(row["model_y"]) or {}).get(row["metric"])
        if cx is None and cy is None:
            continue
        values = [c["value"] for c in (cx, cy) if c is not None]
        ok = all(v > 0 for v in values)
        norm = (
            row["score"] / math.sqrt(math.prod(values))
            if ok and len(values) == 2
            else (row["score"] / values[0] if ok else float("nan"))
        )
        rows.append(
            {
                "model_x": row["model_x"],
                "model_y": row["model_y"],
                "metric": row["metric"],
                "score": row["score"],
                "ceiling_x": cx["value"] if cx else float("nan"),
                "ceiling_y": cy["value"] if cy else float("nan"),
                "normalised": norm,
            }
        )
    return pd.DataFrame(rows)


def imported_lines(results: Results) -> list[str]:
    """Plain sentences: the imported models, the shared items, each noise ceiling."""
    prov = results.provenance
    models = prov.get("models") or {}
    lines = []
    imported = {name: info for name, info in models.items() if (info or {}).get("adapter") == "imported"}
    for name, info in imported.items():
        cite = f"; {info['citation']}" if info.get("citation") else ""
        lines.append(f"{name}: imported {info.get('modality')} embeddings from {info.get('source')}{cite}.")
    restricted = {name: info["items"] for name, info in models.items() if (info or {}).get("items")}
    if restricted:
        items = next(iter(restricted.values()))
        lines.append(
            f"Only the {items['shared']} of {items['n']} items that every model has were used (imported with "
            f"--subset): N={prov.get('N')} in every score."
        )
    for name, per_metric in (prov.get("noise_ceilings") or {}).items():
        for metric, c in per_metric.items():
            lines.append(
                f"Noise ceiling of {name} ({metric}): {c['value']:.3f} (split-half {c['split_half']:.3f}, "
                f"Spearman–Brown to R={c['repeats']}; {c['splits']} splits, range {c['low']:.3f}–{c['high']:.3f})."
            )
    return lines


def imported_section(results: Results) -> tuple[str, str] | None:
    """(HTML, markdown) of the imported-models part of the report, or None when the run has no imported model."""
    lines = imported_lines(results)
    if not lines:
        return None
    table = ceiling_table(results)
    body = (
        "<h2>Imported models and noise ceilings</h2><ul>"
        + "".join(f"<li>{html.escape(s)}</li>" for s in lines)
        + "</ul>"
    )
    md = ["## Imported models and noise ceilings", ""] + [f"- {s}" for s in lines] + [""]
    if not table.empty:
        caption = (
            "Raw and ceiling-normalised scores of the pairs with a repeated measurement: normalised = raw / ceiling "
            "(1 = as aligned as a replication of the recording would be)."
        )
        body += (
            f"<h3>Noise ceilings: raw and normalised scores</h3><p>{html.escape(caption)}</p>"
            + table.to_html(
                index=False, float_format=lambda v: f"{v:.4g}", border=0, classes="results", na_rep=""
            )
        )
        md += [
            "### Noise ceilings: raw and normalised scores",
            "",
            caption,
            "",
            table.to_markdown(index=False, floatfmt=".4g"),
            "",
        ]
    return body, "\n".join(md)


__all__ = ["ceiling_table", "imported_lines", "imported_section"]
