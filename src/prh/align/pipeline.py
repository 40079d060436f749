"""Orchestration shared by `prh align` and `prh demo`: resolve models, load stored features, run the
:class:`~prh.experiment.Experiment`, save the results, build the report, print a summary table."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from prh.errors import InputError, OfflineError
from prh.experiment import DEFAULT_METRICS, Experiment, Results, load_features

if TYPE_CHECKING:
    import pandas as pd


def resolve(models: str) -> list[Any]:
    """Model specs for a comma-separated list of names and/or set names (see `prh models`)."""
    from prh.models import resolve_models

    return resolve_models(models)


def open_dataset(name: str, n: int | None):
    """The dataset object when it can be opened here, else None (features are then matched by name + N)."""
    from prh.data import load_dataset

    try:
        return load_dataset(name, n=n)
    except OfflineError:
        return None


def shuffled_control(n: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """The shuffled-caption control: one fixed random permutation of the N samples (seeded)."""
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(10_000 + seed))
    return {"shuffled_captions": perm}


def run_alignment(
    models_x: Sequence[Any],
    models_y: Sequence[Any] | None,
    dataset_name: str,
    n: int | None,
    store: Any,
    dataset: Any = None,
    metrics: Sequence[str] = DEFAULT_METRICS,
    k: int = 10,
    calibrate: int = 0,
    calibrate_metrics: Sequence[str] | None = None,
    calibrate_within: bool = True,
    bootstrap: int = 0,
    alpha: float = 0.05,
    seed: int = 0,
    q: float = 0.95,
    pool: str | None = None,
    shuffle_control: bool = False,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> Results:
    """Load prepared features of both model sets from ``store`` and score every pair (see :class:`Experiment`).

    With ``cache_dir``, results are stored under a key of everything they depend on (each model's stored
    features by their write id, pooling, metrics and every option); a later call with the same inputs loads
    them instead of recomputing.
    """
    specs = list(models_x) + [m for m in (models_y or []) if m not in models_x]
    pools = {s.name: pool or s.pool for s in specs}
    features = load_features(
        [s.name for s in specs],
        store,
        dataset=dataset,
        dataset_name=None if dataset is not None else dataset_name,
        n=n,
        pools=pools,
        q=q,
    )
    by_name = {f.name: f for f in features}
    for s in specs:  # the registry knows modality/family even if an old sidecar does not
        info = by_name[s.name].info
        info.setdefault("modality", s.modality)
        info.setdefault("family", s.family)
        if info.get("params") is None:
            info["params"] = s.params
        info.setdefault("competence", dict(s.competence))
    options = dict(  # everything the Experiment computes with: also the cache key
        metrics=list(metrics),
        k=k,
        calibrate=calibrate,
        calibrate_metrics=list(calibrate_metrics) if calibrate_metrics is not None else None,
        calibrate_within=calibrate_within,
        bootstrap=bootstrap,
        alpha=alpha,
        seed=seed,
    )
    key = None
    if cache_dir is not None:
        key = results_key(
            features,
            models_x=[s.name for s in models_x],
            models_y=[s.name for s in models_y] if models_y is not None else None,
            q=q,
            shuffle_control=shuffle_control,
            **options,
        )
        cached = Path(cache_dir) / key
        if (cached / "results.parquet").is_file():
            return Results.load(cached)
    xs = [by_name[s.name] for s in models_x]
    ys = [by_name[s.name] for s in models_y] if models_y is not None else None
    n_samples = xs[0].layers[0].shape[0]
    controls = shuffled_control(n_samples, seed) if shuffle_control else {}
    experiment = Experiment(xs, ys, controls=controls, **options)
    results = experiment.run(progress=progress)
    if key is not None:
        results.provenance["cache_key"] = key
        results.save(Path(cache_dir) / key)
    return results


def results_key(features: Sequence[Any], **options: Any) -> str:
    """sha256 (hex, 24 chars) of the stored features' identities (write ids, fingerprints) and all options."""
    import prh

    identity = {
        f.name: [f.info.get("write_id"), (f.info.get("dataset") or {}).get("fingerprint"), f.info.get("pool")]
        for f in features
    }
    blob = json.dumps(
        {"features": identity, "options": options, "prh": prh.__version__}, sort_keys=True, default=str
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def print_summary(results: Results, metric: str = "mutual_knn", top: int = 12) -> None:
    """Rich tables of the best pairs for ``metric`` (cross-modal first, then within modality) plus the findings."""
    from rich.console import Console

    from prh.report import summary_lines

    console = Console()
    t = results.table
    if metric not in set(t["metric"]):
        metric = str(t["metric"].iloc[0])
    main = t[(t["metric"] == metric) & (t["control"] == "none") & (t["model_x"] != t["model_y"])]
    n = int(t["N"].iloc[0])
    cross = main["modality_x"] != main["modality_y"]
    for title, part in (
        (f"cross-modal alignment ({metric}, best layer pair, N={n})", main[cross]),
        (f"within-modality alignment ({metric}, best layer pair, N={n})", main[~cross]),
    ):
        if len(part):
            console.print(_pair_table(title, part, top))
    for line in summary_lines(results, metric):
        console.print(f"• {line}")


def _pair_table(title: str, rows: pd.DataFrame, top: int):
    """One rich table of the ``top`` best-scoring rows; p-value columns only where some row has them."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("model x", "model y", "score", "layers"):
        table.add_column(col, justify="right" if col in ("score", "layers") else "left", no_wrap=True)
    has_p = "p_value" in rows.columns and rows["p_value"].notna().any()
    has_ci = "ci_low" in rows.columns and rows["ci_low"].notna().any()
    if has_p:
        table.add_column("p", justify="right")
        table.add_column("calib.", justify="right")
    if has_ci:
        table.add_column("95% CI", justify="right")
    for _, r in rows.sort_values("score", ascending=False).head(top).iterrows():
        cells = [
            str(r["model_x"]),
            str(r["model_y"]),
            f"{r['score']:.3f}",
            f"{int(r['best_layer_x'])},{int(r['best_layer_y'])}",
        ]
        if has_p:
            cells += [
                f"{r['p_value']:.2g}" if r["p_value"] == r["p_value"] else "",
                f"{r['calibrated_score']:.3f}" if r["calibrated_score"] == r["calibrated_score"] else "",
            ]
        if has_ci:
            cells.append(f"{r['ci_low']:.3f}–{r['ci_high']:.3f}" if r["ci_low"] == r["ci_low"] else "")
        table.add_row(*cells)
    return table


def check_out_dir(out: Path) -> Path:
    """Refuse an output path that is an existing file."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; give a folder for the results.")
    return out
