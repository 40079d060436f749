"""Orchestration shared by `prh align`, `prh demo` and the Ray backend: resolve models, load stored features, run
the :class:`~prh.align.engine.Experiment`, cache the results. (Saving, the report and the summary table are the
commands' part: :mod:`prh.commands._summary`.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from prh.align.engine import DEFAULT_METRICS, Experiment, Results, load_features
from prh.errors import OfflineError


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
