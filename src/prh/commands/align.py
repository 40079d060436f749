"""`prh align` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `align` command to the app (placeholder until it is built)."""
