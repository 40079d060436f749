"""`prh world`: run the Section 5 simulator (contrastive learners converge to the PMI kernel) and write its figures."""

from __future__ import annotations

from pathlib import Path

import typer


def write_json_atomic(data: dict, path: Path) -> Path:
    """Write ``data`` as JSON to ``path`` via a temp file in the same folder and ``os.replace``."""
    import json

    from prh.atomic import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write_text(path, json.dumps(data, indent=1, allow_nan=False))


def register(app: typer.Typer) -> None:
    """Add the `world` command to the app."""

    @app.command()
    def world(
        fast: bool = typer.Option(False, "--fast", help="Small world and short training (under a minute)."),
        out: Path = typer.Option(
            Path("prh-results/world"), "--out", help="Folder for world.json and the PNGs."
        ),
        seeds: int = typer.Option(None, "--seeds", help="Number of seeds (default 3, or 1 with --fast)."),
    ) -> None:
        """Simulate Section 5 of the paper: contrastive learners of two modalities converge to the PMI kernel.

        Trains MLP encoders with InfoNCE on co-occurring observations of a Markov-chain world seen through two
        bijective random renderings (and one lossy one), sweeps capacity and data, and writes world.json plus
        world_capacity.png, world_data.png, world_kernel_scatter.png and world_lossy.png into --out.
        """
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.table import Table

        from prh.commands._console import plain_console
        from prh.errors import InputError
        from prh.world.experiment import DEFAULT, FAST, run_world
        from prh.world.plots import plot_all

        n_seeds = (1 if fast else 3) if seeds is None else seeds
        if n_seeds < 1:
            raise InputError(f"--seeds must be >= 1, got {n_seeds}.")
        if out.exists() and not out.is_dir():
            raise InputError(f"--out {out} exists and is not a folder; pass a folder path.")
        settings = FAST if fast else DEFAULT
        console = plain_console(stderr=True)
        total = settings.n_trainings() * n_seeds
        with Progress(
            TextColumn("world", style="bold"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.description}"),
            TimeElapsedColumn(), console=console,
        ) as bar:  # fmt: skip
            task = bar.add_task("training learners", total=total)
            result = run_world(
                settings, n_seeds, progress=lambda msg: bar.update(task, advance=1, description=msg)
            )
        result["mode"] = "fast" if fast else "default"
        figures = plot_all(result, out)
        result["figures"] = {name: path.name for name, path in figures.items()}
        json_path = write_json_atomic(result, out / "world.json")

        headline = result["summary"]["headline"]
        table = Table(
            title=f"prh world ({result['mode']}, {n_seeds} seed(s), {result['wall_seconds']:.0f} s)"
        )
        table.add_column("measurement")
        table.add_column("value", justify="right")
        table.add_row(
            "largest learner vs PMI kernel (Pearson)",
            f"{headline['largest_learner_pmi_agreement']:.3f}",
        )
        rho = headline["capacity_spearman_mutual_knn"]
        table.add_row("Spearman(capacity, mutual kNN)", "n/a" if rho is None else f"{rho:.3f}")
        lossy = result["summary"]["lossy"]
        table.add_row(
            "Y vs PMI: bijective / lossy / lossy ceiling",
            f"{lossy['agree_bijective']['mean']:.3f} / {lossy['agree_lossy']['mean']:.3f} / "
            f"{lossy['ceiling']['mean']:.3f}",
        )
        table.add_row(
            "mutual kNN X-Y: bijective / lossy",
            f"{lossy['mutual_knn_bijective']['mean']:.3f} / {lossy['mutual_knn_lossy']['mean']:.3f}",
        )
        plain_console().print(table)
        typer.echo(f"wrote {json_path} and {len(figures)} figures in {out}")
