"""`prh stitch A B`: stitch blocks of model A into model B, score on held-out items, write grid, controls, figure."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    """Add the ``stitch`` command."""

    @app.command()
    def stitch(
        model_a: str = typer.Argument(..., help="Sender model (e.g. effnet-lite0)."),
        model_b: str = typer.Argument(..., help="Receiver model, whose own outputs are the reference."),
        n: int = typer.Option(1024, "--n", help="Items of the dataset (its first n)."),
        blocks: int = typer.Option(6, "--blocks", help="Blocks per model in the grid (evenly spaced)."),
        test_fraction: float = typer.Option(0.25, "--test-fraction", help="Held-out share of the items."),
        finetune_epochs: int = typer.Option(
            0, "--finetune-epochs", help="Adam epochs of KL-to-B fine-tuning of the diagonal cells (0 = off)."
        ),
        lr: float = typer.Option(1e-3, "--lr", help="Learning rate of fine-tuning."),
        batch_size: int = typer.Option(32, "--batch-size", help="Images per forward pass."),
        dataset: str = typer.Option("openmoji", "--dataset", "-d", help="Dataset whose images are used."),
        seed: int = typer.Option(0, "--seed"),
        device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto."),
        out: Path = typer.Option(Path("prh-results"), "--out", "-o", help="Results folder."),
        report: bool = typer.Option(True, "--report/--no-report", help="Also (re)build the HTML report."),
    ) -> None:
        """Stitch every selected block of A into every selected block of B (1×1 conv, least squares), score the
        stitched model's agreement with B on held-out items, with controls and the mutual-kNN grid beside it."""
        from prh.commands._summary import check_out_dir
        from prh.stitch import StitchConfig, write_stitch
        from prh.stitch import stitch as run_stitch

        config = StitchConfig(
            n=n,
            blocks=blocks,
            test_fraction=test_fraction,
            finetune_epochs=finetune_epochs,
            lr=lr,
            batch_size=batch_size,
            seed=seed,
            dataset=dataset,
        )
        check_out_dir(out)
        result = run_stitch(model_a, model_b, config, device=device, progress=typer.echo)
        folder = write_stitch(result, out)
        _print(result)
        typer.echo(f"stitching results: {folder}")
        if report:
            from prh.report import build_report

            typer.echo(f"report: {build_report(out)}")


def _print(result) -> None:
    from rich.table import Table

    from prh.commands._console import plain_console

    table = Table(title=f"held-out top-1 agreement with {result.model_b} (rows: {result.model_a})")
    table.add_column(f"{result.model_a} \\ {result.model_b}")
    for name in result.blocks_b:
        table.add_column(name, justify="right")
    for name, row in zip(result.blocks_a, result.agreement):
        table.add_row(name, *(f"{v:.3f}" for v in row))
    console = plain_console()
    console.print(table)
    c = result.controls
    console.print(
        f"diagonal stitched {[round(v, 3) for v in c['stitch']]}; noise sender {[round(v, 3) for v in c['noise']]}; "
        f"shuffled pairing {[round(v, 3) for v in c['shuffled']]}; self-stitching {[round(v, 3) for v in c['self']]}; "
        f"chance {c['chance']:.3f}; Spearman(stitching, mutual kNN) = {result.spearman:.2f}; "
        f"{result.seconds['total']:.0f} s"
    )
