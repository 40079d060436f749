"""`prh align`: alignment of stored features of model sets, every pair over all layer pairs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from prh.align import Results

from prh.commands.models import TRUST_CODE_HELP


def _default_metrics() -> str:
    """``--metric``'s default, from :class:`~prh.align.AlignConfig` (imported only when the command runs)."""
    from prh.align.config import AlignConfig

    return ",".join(AlignConfig().metrics)


def register(app: typer.Typer) -> None:
    """Add the ``align`` command."""

    @app.command()
    def align(
        models: str = typer.Option(
            ..., "--models", "-m", help="Model set(s)/names: X (and Y when --models-y is absent)."
        ),
        models_y: str = typer.Option(None, "--models-y", help="A second model set: score X x Y only."),
        dataset: str = typer.Option(
            None,
            "--dataset",
            "-d",
            help="Dataset the features were extracted on (default openmoji; published models: their own).",
        ),
        n: int = typer.Option(None, "--n", help="Number of items the features were extracted on."),
        metric: str = typer.Option(
            default_factory=_default_metrics,
            help="Comma-separated metric names (default: AlignConfig's, the paper's three; `prh score --list`).",
        ),
        k: int = typer.Option(10, "--k", help="Neighbours for kNN metrics and cknna."),
        calibrate: int = typer.Option(
            0, "--calibrate", help="Permutations K for the permutation null (0 = off)."
        ),
        bootstrap: int = typer.Option(
            0, "--bootstrap", help="Resamples for a confidence interval of each best score."
        ),
        alpha: float = typer.Option(0.05, "--alpha", help="Significance level."),
        select: str = typer.Option(
            "same-items",
            "--select",
            help="Layer selection: same-items, or held-out (choose the pair on half the items, score the other).",
        ),
        select_splits: int = typer.Option(
            20, "--select-splits", help="Random half splits of --select held-out."
        ),
        neighbors: str = typer.Option(
            "exact",
            "--neighbors",
            help="Neighbour search of the kNN metrics: exact, or approximate (FAISS HNSW, for large N; recall reported).",
        ),
        path: str = typer.Option(
            "auto",
            "--path",
            help="How cka, unbiased_cka, debiased_cka and rv compute: auto, gram (N x N kernels) or features (no N x N "
            "matrix, linear kernel); the same numbers.",
        ),
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
        from prh.align import AlignConfig, DatasetName, open_dataset, resolve_names, run_alignment
        from prh.commands._summary import check_out_dir, print_summary
        from prh.commands.models import load_models_files
        from prh.features.store import FeatureStore
        from prh.report import build_report

        if not [name for name in metric.split(",") if name.strip()]:
            from prh.errors import InputError

            raise InputError(
                f"--metric {metric!r} is empty: it names no metric; give at least one, e.g. --metric mutual_knn "
                f"(`prh score --list` lists them)."
            )
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
            select=select,
            select_splits=select_splits,
            neighbors=neighbors,
            path=path,
        )
        use_ray = check_choice(backend, "--backend", ("local", "ray")) == "ray"
        load_models_files(models_file, trust_code)
        check_out_dir(out)  # writable (and not full) before anything is computed
        from prh.align.pipeline import published_dataset
        from prh.features.published import ADAPTER

        specs_x = resolve_names(
            models, FeatureStore(store)
        )  # registry names, sets, imported and published models
        specs_y = resolve_names(models_y, FeatureStore(store)) if models_y else None
        if any(s.adapter == ADAPTER for s in specs_x + (specs_y or [])):
            data = published_dataset(specs_x + (specs_y or []), dataset)
        else:
            ds = open_dataset(dataset or "openmoji", n)
            data = ds if ds is not None else DatasetName(dataset or "openmoji", n)
        if use_ray:
            from prh.distributed import RayOptions, align_ray

            results = align_ray(
                specs_x, specs_y, FeatureStore(store), config, dataset=data, ray=RayOptions(address)
            )
        else:
            results = run_alignment(specs_x, specs_y, FeatureStore(store), config, dataset=data)
        save_results(results, out)
        print_summary(results)
        typer.echo(f"results: {out / 'results.csv'}")
        if report:
            try:
                typer.echo(f"report: {build_report(out)}")
            except OSError as err:
                from prh.errors import InputError

                raise InputError(
                    f"--out {out}: the results are saved there, but the report could not be written "
                    f"({err.strerror or err}); free some space and run `prh report {out}`."
                ) from None


def save_results(results: Results, out: Path) -> Path:
    """``results.save(out)``; when that fails (a disk that filled up, a folder made read-only during the run), save
    them to a fresh temporary folder instead and raise an InputError saying where, so computed results are never
    lost. The files in ``out`` are replaced all together or not at all."""
    import tempfile

    from prh.errors import InputError

    try:
        return results.save(out)
    except OSError as err:
        reason = err.strerror or str(err)
        try:
            fallback = Path(tempfile.mkdtemp(prefix="prh-results-"))
            results.save(fallback)
        except OSError as second:
            raise InputError(
                f"--out {out}: writing the results failed ({reason}), and so did a copy in the temporary folder "
                f"({second.strerror or second}); nothing in {out} was changed. Free some space and run again."
            ) from None
        raise InputError(
            f"--out {out}: writing the results failed ({reason}); nothing in {out} was changed and the computed "
            f"results are kept in {fallback} (see them with `prh report {fallback}`, or copy that folder to {out})."
        ) from None
