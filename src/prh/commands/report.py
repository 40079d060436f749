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
        from prh.errors import InputError
        from prh.report import build_report

        try:
            path = build_report(results, metric)
        except OSError as err:  # figures or pages that cannot be written (read-only folder, full disk)
            raise InputError(
                f"{results}: the report could not be written ({err.strerror or err}"
                f"{f': {err.filename}' if err.filename else ''}); give a results folder you can write to."
            ) from None
        typer.echo(f"report: {path}")
