"""The ``prh`` command line: one typer app, one module per sub-command under :mod:`prh.commands`.

Each command module exposes ``register(app)``; heavy imports (torch, transformers) happen inside the commands so
that ``prh --help`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
import warnings

import typer

from prh.errors import PrhError, PrhWarning

COMMAND_MODULES = (
    "prh.commands.score",
    "prh.commands.models",
    "prh.commands.zoo",
    "prh.commands.extract",
    "prh.commands.import_",
    "prh.commands.align",
    "prh.commands.report",
    "prh.commands.demo",
    "prh.commands.world",
    "prh.commands.fetch_reference",
    "prh.commands.experiment",
    "prh.commands.competence",
    "prh.commands.stitch",
)

app = typer.Typer(
    name="prh",
    help=(
        "prh: measure how alike neural networks see the world (the Platonic Representation Hypothesis).\n\n"
        "Extract per-layer features of many models on one paired image-caption set, measure kernel alignment "
        "between every pair of models over all layer pairs, calibrate scores against a permutation null, and "
        "report it all. `prh demo` runs the whole pipeline offline."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def _root() -> None:
    """Group the sub-commands (keeps `prh <command>` form even when only one command exists)."""


for _module in COMMAND_MODULES:
    importlib.import_module(_module).register(app)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:  # noqa: ANN001
    """prh's own warnings as one ``warning: ...`` line on stderr; any other warning as Python shows it."""
    if issubclass(category, PrhWarning):
        typer.secho(f"warning: {message}", fg=typer.colors.YELLOW, err=True)
    else:
        _PYTHON_SHOWWARNING(message, category, filename, lineno, file, line)


_PYTHON_SHOWWARNING = warnings.showwarning


def main() -> None:
    """Entry point of the ``prh`` script: user errors print one clear line and exit with status 2."""
    warnings.showwarning = _show_warning
    try:
        app()
    except PrhError as err:
        typer.secho(f"error: {err}", fg=typer.colors.RED, err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
