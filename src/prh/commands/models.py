"""`prh models`: list registered models and model sets, and whether each is usable offline right now."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from prh.commands._console import help_text

#: Help of the ``--trust-code`` flag of every command that loads models files.
TRUST_CODE_HELP = (
    "Allow models-file / PRH_MODELS entries to import the Python code they name (options.builder = "
    "'package.module:function'); refused by default, whatever the file says. Each such import is announced on one "
    "warning line."
)


def load_models_files(models_file: list[Path] | None, trust_code: bool = False) -> None:
    """Load the models files of ``PRH_MODELS`` and of ``--models-file`` (in that order, later ones override).

    ``trust_code`` (``--trust-code``) grants their entries' requests to import code; without it such an entry is
    an error, whatever the entry itself says.
    """
    from prh.models import load_user_config
    from prh.models.registry import load_env_models

    load_env_models(trust_code)
    for f in models_file or []:
        load_user_config(f, trust_code=trust_code)


def _params(n: int | None) -> str:
    if not n:
        return ""
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.3g}{unit}"
    return str(n)


def register(app: typer.Typer) -> None:
    """Add the `models` command to the app."""

    @app.command("models")
    def models_command(
        set_name: str = typer.Option(
            None,
            "--set",
            "-s",
            help="Only the models of this set (the sets are listed at the end of `prh models`).",
        ),
        models_file: list[Path] = typer.Option(
            None,
            "--models-file",
            help=help_text("TOML file with your own [[model]] entries and [sets] (repeatable)."),
        ),
        check: bool = typer.Option(
            True, "--check/--no-check", help="Check whether each model is usable offline now."
        ),
        trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_CODE_HELP),
    ) -> None:
        """List the model registry and model sets; say which models are usable offline right now and why not."""
        from rich.table import Table

        from prh.commands._console import plain_console, styled
        from prh.models import all_models, availability, model_set, set_info, set_names

        load_models_files(models_file, trust_code)
        specs = model_set(set_name) if set_name else all_models()
        console = plain_console()
        if not console.is_terminal:
            console = plain_console(width=180)
        title = f"models in set {set_name!r}" if set_name else "registered models"
        table = Table(title=title, show_lines=False)
        for col in (
            "name",
            "modality",
            "adapter",
            "family",
            "params",
            "pool",
            "competence",
            "usable now",
            "why",
        ):
            table.add_column(col, overflow="fold")
        usable = {}
        for spec in specs:
            ok, why = availability(spec) if check else (None, "")
            usable[spec.name] = ok
            comp = ", ".join(f"{k}={v}" for k, v in spec.competence.items())
            mark = "" if ok is None else (styled("yes", "green") if ok else styled("no", "red"))
            table.add_row(
                spec.name,
                spec.modality,
                spec.adapter,
                spec.family,
                _params(spec.params),
                spec.pool,
                comp,
                mark,
                why,
            )
        console.print(table)
        sets = Table(title="model sets")
        for col in ("set", "models", "usable now", "description"):
            sets.add_column(col, overflow="fold")
        for name in set_names():
            if set_name and name != set_name:
                continue
            members = model_set(name)
            info = set_info(name)
            if check:
                n_ok = sum(1 for m in members if (usable[m.name] if m.name in usable else availability(m)[0]))
                ok_text = f"{n_ok}/{len(members)}"
            else:
                ok_text = ""
            sets.add_row(name, str(len(members)), ok_text, info["description"])
        console.print(sets)
        if os.environ.get("PRH_MODELS"):
            console.print(f"user models from PRH_MODELS={os.environ['PRH_MODELS']}")
