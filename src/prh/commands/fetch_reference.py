"""`prh fetch-reference`: the paper's published WIT-1024 features into the feature store (safely)."""

from __future__ import annotations

from pathlib import Path

import typer

DEFAULT_STORE = Path("prh-cache/features")


def _size(n: int | None) -> str:
    if not n:
        return "?"
    for unit, div in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= div:
            return f"{n / div:.3g} {unit}"
    return f"{n} B"


def _list(store: Path) -> None:
    from rich import box
    from rich.table import Table

    from prh.commands._console import plain_console
    from prh.features.reference import load_catalogue, stored_published
    from prh.features.store import FeatureStore

    catalogue = load_catalogue()
    stored = stored_published(FeatureStore(store), catalogue)
    console = plain_console()
    if not console.is_terminal:
        console = plain_console(width=160)
    table = Table(
        title=f"published features of {catalogue.dataset.name}", box=box.SIMPLE_HEAD, pad_edge=False
    )
    for col in ("name", "model", "modality", "pool", "size", "sha256 known", "in platonic", "stored"):
        table.add_column(col, overflow="fold")
    for entry in catalogue.features.values():
        table.add_row(
            entry.name,
            entry.model,
            entry.modality,
            entry.pool,
            _size(entry.size),
            "yes" if entry.verified else "no",
            "yes" if entry.listed else "no",
            "yes" if entry.name in stored else "-",
        )
    console.print(table)
    console.print(
        f"selections: all ({len(catalogue.features)}), platonic ({len(catalogue.members('platonic'))}, the "
        f"reference's list), verified ({len(catalogue.members('verified'))}), language, vision. "
        f"sha256 source: {catalogue.hash_source}"
    )


def register(app: typer.Typer) -> None:
    """Add the `fetch-reference` command to the app."""

    @app.command("fetch-reference")
    def fetch_reference_command(
        names: list[str] = typer.Argument(
            None,
            help="Published feature names (dinov2_l, llama_7b, ...; comma-separated or repeated) or a selection: "
            "all, platonic (the reference's 26), verified (sha256 known), language, vision.",
        ),
        store: Path = typer.Option(
            DEFAULT_STORE, "--store", help="Feature store folder, as in `prh align --store`."
        ),
        base_url: str = typer.Option(
            None,
            "--base-url",
            envvar="PRH_REFERENCE_URL",
            help="Folder URL to download from (a mirror); default: the authors' server.",
        ),
        list_only: bool = typer.Option(
            False, "--list", help="List the catalogue (and what is stored) and exit."
        ),
        keep_pt: bool = typer.Option(
            False, "--keep-pt", help="Keep the downloaded .pt files (in <store>/.downloads) after conversion."
        ),
        force: bool = typer.Option(
            False, "--force", help="Fetch again even when the store has the features."
        ),
        verify: bool = typer.Option(
            True,
            "--verify/--no-verify",
            help="Check size and sha256 where the catalogue knows them (--no-verify: record them only).",
        ),
        bind_dataset: bool = typer.Option(
            False,
            "--bind-dataset",
            help="Open minhuh/prh@wit_1024 (needs the hub once) and bind the features to its fingerprint.",
        ),
        timeout: float = typer.Option(30.0, "--timeout", help="Seconds to wait for a connection or a read."),
        retries: int = typer.Option(
            5, "--retries", help="Further attempts after a failed one (each resumes)."
        ),
        quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bars."),
    ) -> None:
        """Download the paper's published WIT-1024 features into the feature store: resumable, checked
        (size + sha256 where known), loaded without unpickling, converted to safetensors with provenance."""
        from prh.commands._console import plain_console, styled
        from prh.errors import InputError
        from prh.features.download import DownloadOptions
        from prh.features.reference import FetchConfig, fetch_reference, load_catalogue

        if list_only:
            _list(store)
            return
        if not names:
            raise InputError(
                "name the published features to fetch (e.g. `dinov2_l llama_7b`, or `all`); --list shows them."
            )
        catalogue = load_catalogue()
        config = FetchConfig(
            base_url=base_url or None,
            verify=verify,
            keep_download=keep_pt,
            force=force,
            download=DownloadOptions(timeout=timeout, retries=retries, progress=not quiet),
        )
        dataset = None
        if bind_dataset:
            from prh.data import load_dataset

            dataset = load_dataset(catalogue.dataset.revision)
        console = plain_console(stderr=True)
        outcomes = fetch_reference(",".join(names), store, config, dataset=dataset, catalogue=catalogue)
        for outcome in outcomes:
            check = "sha256 verified" if outcome.verified else "sha256 recorded (not in the catalogue)"
            what = "fetched" if outcome.status == "fetched" else "already stored"
            console.print(f"{outcome.name}: {what}, {_size(outcome.size)}, {check} -> {outcome.path}")
        fetched = sum(o.status == "fetched" for o in outcomes)
        console.print(
            styled("done", "green"),
            f": {fetched} fetched, {len(outcomes) - fetched} already in {store}. Score against "
            f'them with prh.Alignment(dataset="minhuh/prh", subset="wit_1024", models=[...], store="{store}").',
        )
