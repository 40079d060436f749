"""`prh demo`: the whole pipeline offline on real pretrained weights — OpenMoji pairs, the offline zoo,
cached features, cross-modal and within-modality alignment, the shuffled-caption control, transfer probes of every
model (measured competence, the paper's Fig. 2 view), and the report."""

from __future__ import annotations

import os
import time
from pathlib import Path

import typer

from prh.commands.models import TRUST_CODE_HELP

FAST_MODELS = "effnet-lite0,minilm-l6"


def register(app: typer.Typer) -> None:
    """Add the ``demo`` command."""

    @app.command()
    def demo(
        out: Path = typer.Option(Path("prh-results"), "--out", "-o", help="Results and report folder."),
        n: int = typer.Option(None, "--n", help="OpenMoji pairs (default 1024; 256 with --fast)."),
        fast: bool = typer.Option(
            False, "--fast", help="Two small models (EfficientNet-Lite0, MiniLM-L6), N=256."
        ),
        models: str = typer.Option(
            None, "--models", help="Override the model set (default: the `offline` set)."
        ),
        calibrate: int = typer.Option(
            None, "--calibrate", help="Permutations K for mutual_knn (default 1000; 200 with --fast)."
        ),
        bootstrap: int = typer.Option(
            None,
            "--bootstrap",
            help="Subsamples for a 95% interval of each cross-modal mutual_knn score (default 200; 50 with --fast).",
        ),
        store: Path = typer.Option(
            Path("prh-cache/features"), "--store", help="Feature store folder (the cache)."
        ),
        batch_size: int = typer.Option(16, "--batch-size"),
        device: str = typer.Option("auto", "--device"),
        seed: int = typer.Option(0, "--seed"),
        models_file: list[Path] = typer.Option(
            None, "--models-file", help="TOML file with your own models/sets."
        ),
        trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_CODE_HELP),
    ) -> None:
        """Run the main job offline: extract (or reuse) features, align every pair, control, report."""
        from prh.align import AlignConfig, run_alignment
        from prh.commands._console import plain_console, styled
        from prh.commands._summary import check_out_dir, print_summary
        from prh.data import load_dataset
        from prh.features import ExtractConfig, extract
        from prh.features.store import FeatureStore
        from prh.models import availability, resolve_models
        from prh.report import build_report

        console = plain_console()
        from prh.commands.models import load_models_files

        load_models_files(models_file, trust_code)
        check_out_dir(out)
        started = time.perf_counter()
        n = n or (256 if fast else 1024)
        config = (
            AlignConfig(  # the demo's statistics: cross-modal mutual_knn pairs, plus the shuffled control
                calibrate=calibrate if calibrate is not None else (200 if fast else 1000),
                bootstrap=bootstrap if bootstrap is not None else (50 if fast else 200),
                calibrate_metrics=["mutual_knn"],
                calibrate_within=False,
                seed=seed,
                shuffle_control=True,
            )
        )
        extract_config = ExtractConfig(device=device, batch_size=batch_size)
        specs = resolve_models(models or (FAST_MODELS if fast else "offline"))
        usable = []
        for spec in specs:
            ok, why = availability(spec)
            if ok:
                usable.append(spec)
            else:
                console.print(f"skipping {spec.name}: {why}", style="yellow")
        if len({s.modality for s in usable}) < 2:
            from prh.errors import ModelLoadError

            raise ModelLoadError(
                "the demo needs at least one language and one vision model from the offline zoo; "
                "run `prh zoo install --all` (or `make demo`, which does it)."
            )
        console.rule(
            styled(f"1/4 features: {len(usable)} models on {n} OpenMoji image–caption pairs", "bold")
        )
        dataset = load_dataset("openmoji", n=n)
        feature_store = FeatureStore(store)
        summaries = extract(
            usable,
            dataset,
            feature_store,
            extract_config,
            progress=True,
            log=lambda msg: console.print(f"  {msg}"),
        )
        failed = [s for s in summaries if s["status"] == "failed"]
        for s in failed:
            console.print(f"{s['model']} failed: {s['error']}", style="red")
        usable = [spec for spec, s in zip(usable, summaries) if s["status"] != "failed"]
        features_done = time.perf_counter()
        console.rule(
            styled(
                f"2/4 alignment: every pair over all layer pairs, K={config.calibrate} permutations, "
                f"B={config.bootstrap} subsamples, shuffled control",
                "bold",
            )
        )
        results = run_alignment(
            usable, None, feature_store, config, dataset=dataset, cache_dir=Path(store).parent / "alignment"
        )
        from prh.commands.align import save_results

        # a late write failure keeps them in a temporary folder and says where, as `prh align` does
        save_results(results, out)
        alignment_done = time.perf_counter()
        console.rule(
            styled(
                "3/4 competence: k-NN and linear probes on the emoji groups, labels shuffled as control",
                "bold",
            )
        )
        from prh.commands.competence import demo_probes

        try:
            demo_probes(usable, feature_store, dataset, out, seed)
            competence_done = time.perf_counter()
            console.rule(styled("4/4 report", "bold"))
            _save_run_times(
                out,
                started,
                features_done,
                alignment_done,
                competence_done,
                (feature_store, dataset, usable, config.pool, results),
            )
            report = build_report(out)
        except OSError as err:  # the alignment results are safe in --out: say so, as `prh align` does
            from prh.errors import InputError

            raise InputError(
                f"--out {out}: the alignment results are saved there, but writing the competence tables or the "
                f"report failed ({err.strerror or err}); free some space and run `prh demo` again with the same "
                f"options (features, alignment and probes are cached), or `prh report {out}` for the report alone."
            ) from None
        print_summary(results)
        console.print("report: ", styled(report, "bold"), f"   table: {out / 'results.csv'}", sep="")


def _save_run_times(
    out: Path, started: float, features: float, alignment: float, competence: float, stored
) -> None:
    """Record the demo's wall time per stage and each model's stored extraction time in ``<out>/run_times.json``,
    where the report's findings quote them (the report's own time is not known yet, so not recorded)."""
    from prh._provenance import describe_machine
    from prh.report.findings import RunTimes, stored_extraction_seconds

    feature_store, dataset, specs, pool, results = stored
    seconds = {
        "total": competence - started,
        "features": features - started,
        "alignment": alignment - features,
        "competence": competence - alignment,
    }
    extraction = stored_extraction_seconds(feature_store, dataset, specs, pool)
    created = (results.provenance or {}).get("created")
    machine = describe_machine()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if load > (os.cpu_count() or 1):  # the times are not those of an idle machine: say so
        machine += f" shared with other work (load average {load:.0f})"
    RunTimes(seconds, extraction, machine, created).save(out)
