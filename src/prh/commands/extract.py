"""`prh extract` (not implemented yet)."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the `extract` command to the app (placeholder until it is built)."""
