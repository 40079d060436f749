"""Every experiment lays out its report section with one helper (Context.write_report_section): name, title and
order from its spec, one description, the run's findings, its figures and tables, links to its JSON/CSV files."""

from __future__ import annotations

import pandas as pd

from prh.experiments import RunOptions, spec
from prh.experiments.base import Context
from prh.report.sections import Figure, Section, Table, render_markdown


def test_the_helper_writes_the_section_every_experiment_used_to_build(tmp_path):
    found = spec("gallery-size")
    ctx = Context(found, RunOptions(out=str(tmp_path)))
    ctx.write_json("results.json", {"a": 1})
    table = pd.DataFrame({"size": [128, 256], "score": [0.1, 0.2]})
    ctx.write_csv("curves.csv", table)
    fig = ctx.figure_path("curves.png")
    fig.write_bytes(b"png")
    lines = ["finding one", "finding two"]
    path = ctx.write_report_section(
        "What it measures.", lines, [(fig, "The caption.", "Curves")], [("Per size", table)]
    )

    expected = Section(
        name=found.name,
        title=found.title,
        order=found.order,
        paragraphs=["What it measures."],
        findings=lines,
        figures=[Figure(f"experiments/{found.name}/figures/curves.png", "The caption.", "Curves")],
        tables=[Table("Per size", table)],
        files=[
            ("results.json", f"experiments/{found.name}/results.json"),
            ("curves.csv", f"experiments/{found.name}/curves.csv"),
        ],
    )
    assert path == tmp_path / "sections" / f"{found.order:02d}-{found.name}.html"
    assert path.with_suffix(".md").read_text(encoding="utf-8") == render_markdown(expected)
    assert path in ctx.files
