"""`prh extract`: per-layer features of model sets on a paired dataset, into the feature store."""

from __future__ import annotations

from pathlib import Path

import typer

from prh.commands.models import TRUST_CODE_HELP

DEFAULT_STORE = Path("prh-cache/features")


def store_option(store: Path | None, out: Path | None) -> Path:
    """The feature store folder of `prh extract`: ``--store``, or the deprecated ``--out`` (with a one-line
    warning on stderr); the default when neither is given."""
    from prh.errors import InputError

    if out is None:
        return store if store is not None else DEFAULT_STORE
    if store is not None and store != out:
        raise InputError(
            f"--store {store} and --out {out} disagree; give only --store (the feature store folder)."
        )
    typer.echo(
        f"warning: `prh extract --out` is deprecated; use `--store {out}` (the feature store folder, as in "
        f"`prh align --store`).",
        err=True,
    )
    return out


def workers_value(text: str) -> int | str:
    """``--workers`` as given: a number of workers (``"2"`` -> 2) or the text itself (``"auto"``, or a bad value
    that :class:`~prh.features.ExtractConfig` refuses with its one message)."""
    text = text.strip()
    return int(text) if text.isdigit() else text


def register(app: typer.Typer) -> None:
    """Add the `extract` command to the app."""

    @app.command("extract")
    def extract_command(
        models: str = typer.Option(
            ..., "--models", "-m", help="Set and/or model names, comma-separated (e.g. offline)."
        ),
        dataset: str = typer.Option(
            "openmoji", "--dataset", "-d", help="Dataset name (openmoji, wit_1024, hf:REPO, folder)."
        ),
        n: int = typer.Option(None, "--n", help="Use the first N items of the dataset."),
        pool: str = typer.Option(
            None, "--pool", help="Pooling for every model: mean, last or cls (default: each model's)."
        ),
        device: str = typer.Option("auto", "--device", help="auto (CUDA if available), cpu, cuda, cuda:N."),
        dtype: str = typer.Option("float32", "--dtype", help="float32, bfloat16, float16 or auto."),
        batch_size: int = typer.Option(16, "--batch-size", "-b", help="Samples per forward pass (>= 1)."),
        store: Path = typer.Option(
            None,
            "--store",
            help=f"Feature store folder (default {DEFAULT_STORE}), as in `prh align --store`.",
        ),
        out: Path = typer.Option(
            None, "--out", hidden=True, help="Deprecated spelling of --store (the feature store folder)."
        ),
        force: bool = typer.Option(False, "--force", help="Recompute features that are already stored."),
        trust_remote_code: bool = typer.Option(
            False,
            "--trust-remote-code",
            help="Allow hub models to run their own Python code (off by default).",
        ),
        device_map: str = typer.Option(
            None, "--device-map", help="e.g. auto: spread a big HF model over all GPUs."
        ),
        models_file: list[Path] = typer.Option(
            None, "--models-file", help="TOML file with your own models/sets."
        ),
        trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_CODE_HELP),
        stop_on_error: bool = typer.Option(
            False, "--stop-on-error", help="Stop at the first model that fails."
        ),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
        workers: str = typer.Option(
            "auto",
            "--workers",
            help="Processes that decode and transform images while a vision model runs: auto (on a GPU "
            "min(4, CPUs - 1), on the CPU only cores torch leaves free; none for a few batches) or a number "
            "(0 = none). Features do not depend on it.",
        ),
        shard_size: int = typer.Option(
            4096,
            "--shard-size",
            help="Rows per resumable shard for bigger datasets: a killed run resumes from its last complete "
            "shard (0 = never shard).",
        ),
        backend: str = typer.Option(
            "local", "--backend", help="local, or ray: one task per model on a Ray cluster."
        ),
        address: str = typer.Option(
            None, "--address", help="Ray cluster address (auto, HOST:6379); default: start a local Ray."
        ),
    ) -> None:
        """Extract per-layer pooled features of models on a paired dataset (language models read captions, vision
        models read images). Stored features with a matching dataset fingerprint are reused."""
        from rich.table import Table

        from prh._validation import check_choice
        from prh.commands._console import plain_console, styled
        from prh.commands.models import load_models_files
        from prh.data import load_dataset
        from prh.errors import ExtractionError
        from prh.features import ExtractConfig, FeatureStore, extract
        from prh.models import resolve_models

        root = store_option(store, out)
        config = ExtractConfig(  # every extraction option, validated here once
            pool=pool,
            device=device,
            dtype=dtype,
            batch_size=batch_size,
            force=force,
            trust_remote_code=trust_remote_code,
            device_map=device_map,
            stop_on_error=stop_on_error,
            workers=workers_value(workers),
            shard_size=shard_size,
        )
        use_ray = check_choice(backend, "--backend", ("local", "ray")) == "ray"
        console = plain_console()
        if not console.is_terminal:
            console = plain_console(width=140)
        load_models_files(models_file, trust_code)
        specs = resolve_models(models)
        ds = load_dataset(dataset, n=n)
        feature_store = FeatureStore(root)
        console.print(f"extracting {len(specs)} model(s) on {ds.name} (N={len(ds)}) into {root}")

        def log(msg: str) -> None:
            console.print(msg, highlight=False)

        if use_ray:
            from prh.distributed import RayOptions, extract_ray

            rows = extract_ray(
                specs, ds, feature_store, config, progress=progress, log=log, ray=RayOptions(address)
            )
        else:
            rows = extract(specs, ds, feature_store, config, progress=progress, log=log)
        table = Table(title=f"feature extraction: {ds.name}, N={len(ds)}")
        for col in ("model", "status", "pool", "time s", "samples/s", "layers", "dim", "bpb"):
            table.add_column(col, justify="right" if col not in ("model", "status", "pool") else "left")
        colour = {"extracted": "green", "cached": "cyan", "failed": "red"}
        for r in rows:
            table.add_row(
                r["model"],
                styled(r["status"], colour.get(r["status"], "white")),
                r["pool"],
                f"{r['time_s']:.1f}" if r["time_s"] is not None else "",
                f"{r['samples_per_s']:.1f}" if r["samples_per_s"] else "",
                str(r["layers"] or ""),
                str(r["dim"] or ""),
                f"{r['bpb']:.3f}" if r["bpb"] is not None else "",
            )
        console.print(table)
        failed = [r for r in rows if r["status"] == "failed"]
        if failed:
            lines = "; ".join(f"{r['model']}: {r['error']}" for r in failed)
            raise ExtractionError(
                f"{len(failed)} of {len(rows)} model(s) failed (features of the others are stored): {lines}"
            )
