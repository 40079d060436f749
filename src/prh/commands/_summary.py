"""Presentation of an alignment run on the terminal (used by `prh align` and `prh demo`): the rich tables of the
best pairs, the findings, and the check of the ``--out`` folder."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prh.errors import InputError

if TYPE_CHECKING:
    import pandas as pd

    from prh.align import Results


def print_summary(results: Results, metric: str = "mutual_knn", top: int = 12) -> None:
    """Rich tables of the best pairs for ``metric`` (cross-modal first, then within modality) plus the findings."""
    from prh.commands._console import plain_console
    from prh.report import summary_lines

    console = plain_console()
    t = results.table
    if metric not in set(t["metric"]):
        metric = str(t["metric"].iloc[0])
    main = t[(t["metric"] == metric) & (t["control"] == "none") & (t["model_x"] != t["model_y"])]
    n = int(t["N"].iloc[0])
    cross = main["modality_x"] != main["modality_y"]
    for title, part in (
        (f"cross-modal alignment ({metric}, best layer pair, N={n})", main[cross]),
        (f"within-modality alignment ({metric}, best layer pair, N={n})", main[~cross]),
    ):
        if len(part):
            console.print(_pair_table(title, part, top))
    for line in summary_lines(results, metric):
        console.print(f"• {line}")


def _pair_table(title: str, rows: pd.DataFrame, top: int):
    """One rich table of the ``top`` best-scoring rows; p-value columns only where some row has them."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("model x", "model y", "score", "layers"):
        table.add_column(col, justify="right" if col in ("score", "layers") else "left", no_wrap=True)
    has_p = "p_value" in rows.columns and rows["p_value"].notna().any()
    has_ci = "ci_low" in rows.columns and rows["ci_low"].notna().any()
    if has_p:
        table.add_column("p", justify="right")
        table.add_column("calib.", justify="right")
    if has_ci:
        table.add_column("95% CI", justify="right")
    has_held = "held_out" in rows.columns and rows["held_out"].notna().any()
    if has_held:
        table.add_column("held-out (spread)", justify="right")
    for _, r in rows.sort_values("score", ascending=False).head(top).iterrows():
        cells = [
            str(r["model_x"]),
            str(r["model_y"]),
            f"{r['score']:.3f}",
            f"{int(r['best_layer_x'])},{int(r['best_layer_y'])}",
        ]
        if has_p:
            cells += [
                f"{r['p_value']:.2g}" if r["p_value"] == r["p_value"] else "",
                f"{r['calibrated_score']:.3f}" if r["calibrated_score"] == r["calibrated_score"] else "",
            ]
        if has_ci:
            cells.append(f"{r['ci_low']:.3f}–{r['ci_high']:.3f}" if r["ci_low"] == r["ci_low"] else "")
        if has_held:
            held = r["held_out"]
            cells.append(
                f"{held:.3f} ({r['held_out_low']:.3f}–{r['held_out_high']:.3f})" if held == held else ""
            )
        table.add_row(*cells)
    return table


def check_out_dir(out: Path) -> Path:
    """Refuse an output path that is an existing file, or a folder that cannot be written (read-only, no
    permission, a full disk) -- before anything is computed."""
    from prh.atomic import check_writable

    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the results.")
    return check_writable(out, "--out")
