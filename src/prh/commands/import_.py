"""`prh import`: embeddings computed elsewhere (API models, another framework, neural recordings) into the feature
store, matched to the dataset's items by id, so that they join `prh align`, the report and prh.Alignment."""

from __future__ import annotations

from pathlib import Path

import typer

#: Metrics the noise ceiling of a repeated measurement is printed for (those of `prh align` by default).
CEILING_METRICS = "mutual_knn,cknna,unbiased_cka"


def register(app: typer.Typer) -> None:
    """Add the ``import`` command."""

    @app.command("import")
    def import_command(
        name: str = typer.Argument(..., help="The model name the embeddings get (used by --models)."),
        files: list[Path] = typer.Argument(
            ..., help=".npy, .npz, .safetensors, .parquet, .csv or .h5 files (several: layers in order)."
        ),
        modality: str = typer.Option(
            ...,
            "--modality",
            help="A label: vision, language, brain, audio, ... (different labels = cross-modal).",
        ),
        dataset: str = typer.Option("openmoji", "--dataset", "-d", help="Dataset the rows belong to."),
        n: int = typer.Option(None, "--n", help="Use the first N items of the dataset."),
        id_column: str = typer.Option(
            None, "--id-column", help="Column / array with the item ids (default: an 'ids' or 'id' one)."
        ),
        key: str = typer.Option(
            None,
            "--key",
            help="Arrays, columns or HDF5 dataset paths to read, comma-separated, in layer order.",
        ),
        layer_names: str = typer.Option(None, "--layer-names", help="Comma-separated names of the layers."),
        repeats: bool = typer.Option(
            False,
            "--repeats",
            help="(R, N, D) repeated measurements (or one file per repeat): mean + noise ceiling.",
        ),
        subset: bool = typer.Option(
            False, "--subset", help="Keep the dataset items the file has (default: refuse missing items)."
        ),
        family: str = typer.Option("", "--family", help="Model family, for the report."),
        params: int = typer.Option(None, "--params", help="Parameter count, when known."),
        citation: str = typer.Option("", "--citation", help="Where the embeddings come from."),
        pool: str = typer.Option("mean", "--pool", help="Pooling name to store them under."),
        ceiling_metrics: str = typer.Option(
            CEILING_METRICS,
            "--ceiling-metrics",
            help="With --repeats: metrics to print the noise ceiling for.",
        ),
        store: Path = typer.Option(Path("prh-cache/features"), "--store", help="Feature store folder."),
    ) -> None:
        """Import embeddings from FILE(s) as model NAME (matched to the dataset's items by id when the file has ids)."""
        from prh.data import load_dataset
        from prh.features import ImportConfig, import_features
        from prh.features.store import FeatureStore

        config = ImportConfig(
            modality=modality,
            family=family,
            params=params,
            citation=citation,
            layer_names=layer_names,
            id_column=id_column,
            keys=key,
            repeats=repeats,
            subset=subset,
            pool=pool,
        )
        metrics = [m.strip() for m in ceiling_metrics.split(",") if m.strip()]
        if repeats:
            from prh._validation import check_names
            from prh.metrics import names as metric_names

            check_names(metrics, "--ceiling-metrics", metric_names())
        ds = load_dataset(dataset, n=n)
        report = import_features(name, files, ds, FeatureStore(store), config)
        for line in report.lines():
            typer.echo(line)
        if report.repeats_data:
            import torch

            from prh.stats import noise_ceiling

            stacked = torch.stack(report.repeats_data)
            for metric in metrics:
                c = noise_ceiling(stacked, metric)
                typer.echo(
                    f"noise ceiling ({metric}): {c.value:.4f} (split-half {c.split_half:.4f}, Spearman-Brown to R="
                    f"{c.repeats}; {c.splits} splits: {c.low:.4f}-{c.high:.4f})"
                )
        typer.echo(f"use it: prh align --models {name},... --dataset {dataset}" + (f" --n {n}" if n else ""))
