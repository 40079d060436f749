"""Terminal output through rich that never reads user-facing text as rich markup.

Rich treats ``[...]`` as a style tag and drops it, so ``pip install 'prh[timm]'`` or a help text about
``[[model]]`` entries would lose their brackets. Every console of the commands is made here with markup off;
colour and weight are given as ``style=`` or :func:`styled` (a :class:`rich.text.Text`), never as tags.
"""

from __future__ import annotations

from typing import Any


def plain_console(**options: Any):
    """A :class:`rich.console.Console` that prints strings exactly as given (``markup=False``).

    ``options`` go to the Console (``stderr=True``, ``width=140``, ...).
    """
    from rich.console import Console

    return Console(markup=False, **options)


def help_text(text: str | None) -> str | None:
    """A help text for typer, which renders help through rich: brackets escaped (``[[model]]``, ``prh[timm]``)."""
    if text is None:
        return None
    from rich.markup import escape

    return escape(text)


def styled(text: object, style: str):
    """``text`` as a :class:`rich.text.Text` in ``style`` (e.g. ``"green"``, ``"bold"``): styled, never parsed."""
    from rich.text import Text

    return Text(str(text), style=style)
