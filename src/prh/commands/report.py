"""`prh report`: figures, report.html and report.md from a results folder."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``report`` command."""

    @app.command()
    def report(
        results: Path = typer.Argument(
            Path("prh-results"), help="Folder written by `prh align` or `prh demo`."
        ),
        metric: str = typer.Option(
            None, "--metric", help="Metric of the single-metric figures (default mutual_knn)."
        ),
    ) -> None:
        """Build the HTML report (plus PNG figures and a markdown summary) of an alignment run."""
        from prh.report import build_report

        typer.echo(f"report: {build_report(results, metric)}")
