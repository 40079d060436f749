"""`prh align`: alignment of stored features of model sets, every pair over all layer pairs."""

from __future__ import annotations

from pathlib import Path

import typer

from prh.commands.models import TRUST_CODE_HELP


def register(app: typer.Typer) -> None:
    """Add the ``align`` command."""

    @app.command()
    def align(
        models: str = typer.Option(
            ..., "--models", "-m", help="Model set(s)/names: X (and Y when --models-y is absent)."
        ),
        models_y: str = typer.Option(None, "--models-y", help="A second model set: score X x Y only."),
        dataset: str = typer.Option(
            "openmoji", "--dataset", "-d", help="Dataset the features were extracted on."
        ),
        n: int = typer.Option(None, "--n", help="Number of items the features were extracted on."),
        metric: str = typer.Option(
            "mutual_knn,cknna,unbiased_cka", "--metric", help="Comma-separated metric names."
        ),
        k: int = typer.Option(10, "--k", help="Neighbours for kNN metrics and cknna."),
        calibrate: int = typer.Option(
            0, "--calibrate", help="Permutations K for the permutation null (0 = off)."
        ),
        bootstrap: int = typer.Option(
            0, "--bootstrap", help="Resamples for a confidence interval of each best score."
        ),
        alpha: float = typer.Option(0.05, "--alpha", help="Significance level."),
        shuffle_control: bool = typer.Option(
            False, "--shuffle-control", help="Add cross-modal pairs with captions shuffled."
        ),
        pool: str = typer.Option(
            None, "--pool", help="Pooling the features were stored with (default: each model's)."
        ),
        q: float = typer.Option(0.95, "--q", help="Outlier clamp quantile of prh.prepare."),
        store: Path = typer.Option(Path("prh-cache/features"), "--store", help="Feature store folder."),
        out: Path = typer.Option(Path("prh-results"), "--out", "-o", help="Results folder."),
        report: bool = typer.Option(True, "--report/--no-report", help="Also build the HTML report."),
        seed: int = typer.Option(0, "--seed"),
        models_file: list[Path] = typer.Option(
            None, "--models-file", help="TOML file with your own models/sets."
        ),
        trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_CODE_HELP),
        backend: str = typer.Option(
            "local", "--backend", help="local, or ray: the pair grid in tiles on a Ray cluster."
        ),
        address: str = typer.Option(
            None, "--address", help="Ray cluster address (auto, HOST:6379); default: start a local Ray."
        ),
    ) -> None:
        """Score every model pair (best layer pair per metric) from stored features; write the table and report."""
        from prh._validation import check_choice
        from prh.align import AlignConfig, DatasetName, open_dataset, resolve, run_alignment
        from prh.commands._summary import check_out_dir, print_summary
        from prh.commands.models import load_models_files
        from prh.features.store import FeatureStore
        from prh.report import build_report

        config = AlignConfig(  # every option that changes the numbers, validated here once
            metrics=metric,
            k=k,
            calibrate=calibrate,
            bootstrap=bootstrap,
            alpha=alpha,
            seed=seed,
            q=q,
            pool=pool,
            shuffle_control=shuffle_control,
        )
        use_ray = check_choice(backend, "--backend", ("local", "ray")) == "ray"
        load_models_files(models_file, trust_code)
        check_out_dir(out)
        specs_x = resolve(models)
        specs_y = resolve(models_y) if models_y else None
        ds = open_dataset(dataset, n)
        data = ds if ds is not None else DatasetName(dataset, n)
        if use_ray:
            from prh.distributed import RayOptions, align_ray

            results = align_ray(
                specs_x, specs_y, FeatureStore(store), config, dataset=data, ray=RayOptions(address)
            )
        else:
            results = run_alignment(specs_x, specs_y, FeatureStore(store), config, dataset=data)
        results.save(out)
        print_summary(results)
        typer.echo(f"results: {out / 'results.csv'}")
        if report:
            typer.echo(f"report: {build_report(out)}")
