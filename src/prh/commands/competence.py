"""`prh competence`: transfer probes (k-NN, linear) on stored features of a labelled set, downstream scores, and
the report's Fig. 2 / Fig. 4 views."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from prh.commands.models import TRUST_CODE_HELP

if TYPE_CHECKING:
    from prh.competence import CompetenceResults


def register(app: typer.Typer) -> None:
    """Add the ``competence`` command."""

    @app.command()
    def competence(
        models: str = typer.Option(
            ..., "--models", "-m", help="Model set(s)/names to probe (see `prh models`)."
        ),
        dataset: str = typer.Option(
            "openmoji",
            "--dataset",
            "-d",
            help="openmoji (labels: emoji groups), a folder-per-class tree (or classes:PATH), hf:REPO (with "
            "--label-column), or any paired dataset with --labels FILE.csv.",
        ),
        n: int = typer.Option(
            None, "--n", help="Number of items (the features' N; e.g. 1024 for the demo's)."
        ),
        labels: str = typer.Option(
            "group",
            "--labels",
            help="openmoji: 'group' or 'subgroup' (Unicode emoji groups); any dataset: a CSV file id,label.",
        ),
        emoji_test: Path = typer.Option(
            None, "--emoji-test", help="Read the emoji groups from this Unicode emoji-test.txt instead."
        ),
        split: str = typer.Option("train", "--split", help="Split of a hub dataset."),
        label_column: str = typer.Option("label", "--label-column", help="Class column of a hub dataset."),
        text_column: str = typer.Option(
            None,
            "--text-column",
            help="Caption column of a hub dataset (then language models are probed too).",
        ),
        folds: int = typer.Option(5, "--folds", help="Stratified cross-validation folds."),
        repeats: int = typer.Option(1, "--repeats", help="Repetitions of the folds with other splits."),
        k: int = typer.Option(10, "--k", help="Neighbours of the k-NN probe."),
        c: float = typer.Option(1.0, "--C", help="Inverse L2 penalty of the logistic regression."),
        shuffles: int = typer.Option(1, "--shuffles", help="Label-shuffled controls."),
        skip_input_layers: bool = typer.Option(
            True,
            "--skip-input-layers/--keep-input-layers",
            help="Leave input layers (stem, token embeddings) out of the best layer and the Fig. 2 view.",
        ),
        downstream: list[str] = typer.Option(
            None,
            "--downstream",
            help="Downstream scores: an lm-evaluation-harness results JSON ([MODEL=]FILE) or a CSV "
            "model,task,metric,value. Repeatable.",
        ),
        force_downstream: bool = typer.Option(
            False,
            "--force-downstream",
            help="Attach --downstream scores even where their file names another model or modality.",
        ),
        reference_vision: str = typer.Option(
            None,
            "--reference-vision",
            help="Fig. 4: alignment to this vision model (default: mean over vision).",
        ),
        pool: str = typer.Option(
            None, "--pool", help="Pooling of the stored features (default: each model's)."
        ),
        q: float = typer.Option(0.95, "--q", help="Outlier clamp quantile of prh.prepare."),
        solver: str = typer.Option("torch", "--solver", help="Linear probe solver: torch or sklearn."),
        seed: int = typer.Option(0, "--seed"),
        store: Path = typer.Option(Path("prh-cache/features"), "--store", help="Feature store folder."),
        out: Path = typer.Option(
            Path("prh-results"), "--out", "-o", help="Results folder (tables go to competence/)."
        ),
        extract_missing: bool = typer.Option(
            True, "--extract/--no-extract", help="Extract features that are not in the store yet."
        ),
        device: str = typer.Option("auto", "--device", help="Device for extracting missing features."),
        batch_size: int = typer.Option(
            16, "--batch-size", help="Batch size for extracting missing features."
        ),
        report: bool = typer.Option(
            True, "--report/--no-report", help="Also (re)build the HTML report of --out."
        ),
        models_file: list[Path] = typer.Option(
            None, "--models-file", help="TOML file with your own models/sets."
        ),
        trust_code: bool = typer.Option(False, "--trust-code", help=TRUST_CODE_HELP),
    ) -> None:
        """Measure each model's competence with k-NN and linear probes (and a label-shuffled control); attach
        downstream scores; write <out>/competence/ and the report's Fig. 2 / Fig. 4 views."""
        from prh.commands._summary import check_out_dir
        from prh.commands.models import load_models_files
        from prh.competence import ProbeConfig, attach, read_downstream, run_competence
        from prh.errors import InputError
        from prh.features.store import FeatureStore
        from prh.models import resolve_models

        config = ProbeConfig(  # every option that changes the numbers, validated here once
            folds=folds,
            repeats=repeats,
            k=k,
            C=c,
            shuffles=shuffles,
            seed=seed,
            q=q,
            skip_input_layers=skip_input_layers,
            solver=solver,
        )
        load_models_files(models_file, trust_code)
        specs = resolve_models(models)
        if pool is not None:
            from dataclasses import replace

            specs = [replace(s, pool=pool) for s in specs]
        if reference_vision is not None and reference_vision not in {
            s.name for s in specs if s.modality == "vision"
        }:
            raise InputError(
                f"--reference-vision {reference_vision!r} is not a vision model of --models "
                f"({sorted(s.name for s in specs if s.modality == 'vision')}); name one of them or leave it out."
            )
        frames = [read_downstream(spec) for spec in downstream or []]  # bad files fail before any work
        resolved = (
            attach(
                frames,
                {s.name: s.source for s in specs},
                modalities={s.name: s.modality for s in specs},
                force=force_downstream,
            )
            if frames
            else None
        )
        check_out_dir(out)
        data, label_set = open_labelled(dataset, n, labels, emoji_test, (split, label_column, text_column))
        feature_store = FeatureStore(store)
        if extract_missing:
            _extract_missing(specs, data, feature_store, device, batch_size)
        result = run_competence(specs, feature_store, data, label_set, config, log=typer.echo)
        if resolved is not None:
            result = result.with_downstream(resolved)
        result.provenance.setdefault("views", {})["reference_vision"] = reference_vision
        result.save(out / "competence")
        print_table(result)
        typer.echo(f"tables: {out / 'competence' / 'probes.csv'}")
        if report:
            from prh.report import build_report
            from prh.report.competence import update_section

            try:
                if not (out / "results.parquet").is_file():
                    update_section(None, out, None)
                typer.echo(f"report: {build_report(out)}")
            except OSError as err:
                raise InputError(
                    f"--out {out}: the competence tables are saved, but the report could not be written "
                    f"({err.strerror or err}); free some space and run `prh report {out}`."
                ) from None


def open_labelled(dataset: str, n: int | None, labels: str, emoji_test: Path | None, hub: tuple):
    """The dataset and its labels for ``prh competence``: a labelled set's own labels, the emoji groups of
    OpenMoji, or a labels CSV file. ``hub`` is (split, label_column, text_column) for hub datasets."""
    from prh.competence import emoji_labels, labels_from_file, load_labelled
    from prh.data import builtin_class, load_dataset
    from prh.errors import InputError

    split, label_column, text_column = hub
    file_labels = labels not in ("group", "subgroup")
    data = None
    if builtin_class(dataset) is None and not (file_labels and dataset.startswith("hf:")):
        data = load_labelled(dataset, n, split, label_column, text_column)  # None for a paired set
    if data is None:
        data = load_dataset(dataset, n=n)
    if file_labels:
        return data, labels_from_file(labels, data.ids)
    own = getattr(data, "labels", None)
    if own is not None:
        return data, own
    if data.emoji_ids:
        return data, emoji_labels(data.ids, level=labels, source=emoji_test)
    raise InputError(
        f"--dataset {dataset!r} has no labels of its own; give them with --labels FILE.csv (columns id,label), use "
        f"a folder-per-class tree, or a hub image-classification set with --label-column."
    )


def _extract_missing(specs, data, store, device: str, batch_size: int) -> None:
    """Extract what the store lacks (language models only where the dataset has captions)."""
    from prh.features import ExtractConfig, extract
    from prh.models import availability

    captions = bool(getattr(data, "has_captions", True))
    todo = [
        s for s in specs if (captions or s.modality != "language") and not store.has(data, s.name, s.pool)
    ]
    if not todo:
        return
    usable = []
    for spec in todo:
        ok, why = availability(spec)
        if ok:
            usable.append(spec)
        else:
            typer.echo(f"{spec.name}: cannot extract here ({why})")
    if usable:
        typer.echo(f"extracting {len(usable)} model(s) the store lacks on {data.name} (N={len(data)})")
        extract(
            usable,
            data,
            store,
            ExtractConfig(device=device, batch_size=batch_size),
            progress=True,
            log=typer.echo,
        )


def print_table(result: CompetenceResults) -> None:
    """Per model: k-NN and linear accuracy (last and best layer) with intervals, and the shuffled control."""
    from prh.competence import coverage_lines

    for line in coverage_lines(result):
        typer.echo(line)
    t = result.table
    typer.echo("accuracy [95% interval over the folds]; control = the same probe with the labels shuffled")

    def cell(row) -> str:
        return f"{row['accuracy']:.3f} [{row['ci_low']:.3f}, {row['ci_high']:.3f}]"

    for model in dict.fromkeys(t["model"]):
        get = {(r["probe"], r["layer_choice"]): r for _, r in t[t["model"] == model].iterrows()}
        first = get[("linear", "best")]
        typer.echo(f"{model} ({first['modality']}, n={int(first['n'])}, {int(first['n_classes'])} classes)")
        for probe, label in (("knn", "k-NN  "), ("linear", "linear")):
            last, best = get[(probe, "last")], get[(probe, "best")]
            typer.echo(
                f"  {label} last {cell(last)}  best {cell(best)} at {best['layer_name']}  | control "
                f"{best['control_accuracy']:.3f} [{best['control_ci_low']:.3f}, {best['control_ci_high']:.3f}], "
                f"balanced {best['control_balanced_accuracy']:.3f} [{best['control_balanced_ci_low']:.3f}, "
                f"{best['control_balanced_ci_high']:.3f}] (chance 1/C = {best['chance_balanced']:.3f})"
            )
    if not result.downstream.empty:
        models = sorted(set(result.downstream["model"]))
        typer.echo(f"downstream scores attached: {len(result.downstream)} for {', '.join(models)}")


def demo_probes(specs, store, dataset, out: Path, seed: int) -> None:
    """The demo's competence step: probes of every model on the Unicode emoji groups of the OpenMoji items, written
    to ``<out>/competence`` (the report's Fig. 2 view reads them). Without the emoji labels it says so and goes on."""
    from prh.competence import ProbeConfig, emoji_labels, run_competence
    from prh.errors import InputError

    try:
        labels = emoji_labels(dataset.ids)
    except InputError as err:
        typer.echo(f"skipping the competence probes: {err}")
        return
    result = run_competence(
        specs, store, dataset, labels, ProbeConfig(seed=seed), log=lambda m: typer.echo(f"  {m}")
    )
    result.save(out / "competence")
    print_table(result)
