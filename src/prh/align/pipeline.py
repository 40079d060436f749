"""Orchestration shared by `prh align`, `prh demo` and the Ray backend: resolve models, load stored features, run
the :class:`~prh.align.engine.PairGrid`, cache the results. (Saving, the report and the summary table are the
commands' part: :mod:`prh.commands._summary`.)"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from prh._validation import check_int
from prh.align._imported import import_declared, noise_ceilings
from prh.align._loading import clamp_scope, prepared_layers
from prh.align.config import AlignConfig
from prh.align.engine import ModelFeatures, PairGrid, Results, load_features
from prh.align.stream import LayerSource, StreamedGrid
from prh.errors import InputError, OfflineError


def published_dataset(specs: Sequence[Any], dataset: Any) -> Any:
    """The dataset of a run: ``dataset`` as given, or — when ``specs`` hold published features — the catalogue's
    dataset by name and N (published features are bound to it; another dataset is refused, naming both)."""
    from prh.features.published import ADAPTER, check_dataset
    from prh.features.reference import load_catalogue

    if not any(getattr(s, "adapter", None) == ADAPTER for s in specs):
        if dataset is None:
            raise InputError("dataset is required: the dataset the features were extracted on.")
        return dataset
    catalogue = load_catalogue()
    if dataset is None:
        name = None
    elif isinstance(dataset, str):
        name = dataset
    elif isinstance(dataset, DatasetName):
        name = dataset.name
    else:
        name = str(getattr(dataset, "name", dataset))
    return DatasetName(check_dataset(name, catalogue), catalogue.dataset.n)


@dataclass(frozen=True)
class DatasetName:
    """A dataset known by name (and size) only, e.g. where it cannot be opened (offline, or on a Ray worker).

    Stored features are then matched by the dataset's name and ``n`` (no fingerprint check against the data; the
    models' fingerprints must still agree among themselves).

    Parameters
    ----------
    name : str
        The dataset's name, or the store's folder name ``<slug>-n<N>``.
    n : int or None, default None
        Number of items the features were extracted on (needed when several sizes are stored), >= 1.
    """

    name: str
    n: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InputError(f"dataset name={self.name!r} must be a non-empty string, e.g. 'openmoji'.")
        if self.n is not None:
            object.__setattr__(self, "n", check_int(self.n, "n", minimum=1, hint="a number of items"))


def dataset_lookup(dataset: Any) -> dict[str, Any]:
    """The ``dataset`` / ``dataset_name`` / ``n`` keywords of the store's lookups for a dataset object, a
    :class:`DatasetName` or a plain name."""
    if isinstance(dataset, str):
        dataset = DatasetName(dataset)
    if isinstance(dataset, DatasetName):
        return {"dataset": None, "dataset_name": dataset.name, "n": dataset.n}
    if dataset is None or not callable(getattr(dataset, "fingerprint", None)):
        raise InputError(
            f"dataset={dataset!r} must be a dataset (prh.data.load_dataset), a dataset name or a "
            f"prh.align.DatasetName(name, n)."
        )
    return {"dataset": dataset, "dataset_name": None, "n": len(dataset)}


def open_dataset(name: str, n: int | None):
    """The dataset object when it can be opened here, else None (then pass ``DatasetName(name, n)``: features are
    matched by name + N)."""
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
    store: Any,
    config: AlignConfig | Mapping[str, Any] | None = None,
    *,
    dataset: Any = None,
    progress: bool = True,
    cache_dir: str | Path | None = None,
) -> Results:
    """Score every pair of both model sets from the features in ``store`` (see :class:`PairGrid`), streaming:
    one model's raw features are in memory at a time (:class:`~prh.align.stream.StreamedGrid`; the same numbers
    as loading them all). Models with imported item subsets or repeated measurements are loaded all at once.

    Parameters
    ----------
    models_x, models_y : sequences of ModelSpec
        Registry entries (:func:`resolve`); ``models_y=None`` scores every pair within X.
    store : FeatureStore
        Where the features are (run `prh extract` first).
    config : AlignConfig, optional
        Every option that changes the numbers (default ``AlignConfig()``; a mapping of its fields is accepted).
    dataset : dataset, DatasetName or str
        The data the features were extracted on: the dataset object (each model's stored fingerprint is checked
        against it), or only its name, as ``DatasetName(name, n)`` or a plain string, when it cannot be opened
        here (features are then matched by name and N and must agree among themselves). None with published
        models: their catalogue's dataset (any other is refused).
    progress : bool, default True
        Show a progress bar.
    cache_dir : path, optional
        With it, results are stored under :func:`results_key` (each model's stored features by their write id,
        pooling, the model lists and the whole config); a later call with the same inputs loads them instead of
        recomputing.

    Returns
    -------
    Results
        The table, every layer grid, and the provenance (with ``"config"``: ``config.to_dict()``).
    """
    from prh.features.published import ADAPTER, require_fetched

    config = AlignConfig.coerce(config)
    if dataset is not None:
        dataset_lookup(dataset)  # a malformed dataset argument is refused first
    if not models_x:
        raise InputError("models_x is empty; give at least one model.")
    specs = list(models_x) + [m for m in (models_y or []) if m not in models_x]
    dataset = published_dataset(specs, dataset)
    lookup = dataset_lookup(dataset)
    require_fetched([s for s in specs if s.adapter == ADAPTER], store)
    import_declared(specs, lookup["dataset"], store)  # models-file entries with adapter = "imported"
    pools = {s.name: (s.pool if s.adapter == ADAPTER else config.pool or s.pool) for s in specs}
    metas = store.find_many([s.name for s in specs], pools, **lookup)
    stream = not any(_whole(meta) for meta in metas.values())
    if stream:  # only the store's records now; each model is read when the grid gets to it
        features = [ModelFeatures(s.name, [], {**metas[s.name], "model": s.name}) for s in specs]
    else:
        features = load_features([s.name for s in specs], store, pools=pools, q=config.q, **lookup)
    by_name = {f.name: f for f in features}
    for s in specs:  # the registry knows modality/family even if an old sidecar does not
        info = by_name[s.name].info
        info.setdefault("modality", s.modality)
        info.setdefault("family", s.family)
        if info.get("params") is None:
            info["params"] = s.params
        info.setdefault("competence", dict(s.competence))
    names_x = [s.name for s in models_x]
    names_y = [s.name for s in models_y] if models_y is not None else None
    key = None
    if cache_dir is not None:
        key = results_key(features, config, names_x, names_y)
        cached = Path(cache_dir) / key
        if (cached / "results.parquet").is_file():
            return Results.load(cached)
    xs = [by_name[name] for name in names_x]
    ys = [by_name[name] for name in names_y] if names_y is not None else None
    n_samples = int(xs[0].info["n"]) if stream else xs[0].layers[0].shape[0]
    controls = shuffled_control(n_samples, config.seed) if config.shuffle_control else {}
    if stream:
        sources = {
            f.name: stored_source(store, f.name, pools[f.name], lookup, config.q, clamp_scope(f.info))
            for f in features
        }

        def check(name: str) -> None:  # every file read and verified once up front (the store remembers it)
            store.load(
                lookup["dataset"],
                name,
                pools[name],
                dataset_name=lookup["dataset_name"],
                n=lookup["n"],
                dtype=None,
            )

        grid = StreamedGrid(xs, ys, config, controls=controls, sources=sources, check=check)
        results = grid.run(progress=progress)
    else:
        results = PairGrid(xs, ys, config, controls=controls).run(progress=progress)
    results.provenance["config"] = config.to_dict()
    ceilings = noise_ceilings(features, config)  # models with repeated measurements (imported recordings)
    if ceilings:
        results.provenance["noise_ceilings"] = ceilings
    if key is not None:
        results.provenance["cache_key"] = key
        results.save(Path(cache_dir) / key)
    return results


def _whole(meta: dict) -> bool:
    """Features that must be loaded all at once: an imported subset of the items (a ``present`` mask, shared
    across the models) or repeated measurements (for the noise ceiling)."""
    return "present" in (meta.get("per_sample") or []) or bool(meta.get("repeats"))


def stored_source(store: Any, name: str, pool: str, lookup: dict, q: float, scope: str) -> LayerSource:
    """A :data:`~prh.align.stream.LayerSource` of one stored model: read it in its stored dtype (checked as
    :meth:`FeatureStore.load` checks), then yield its prepared layers one by one, dropping each raw layer."""

    def source():
        stored = store.load(
            lookup["dataset"], name, pool, dataset_name=lookup["dataset_name"], n=lookup["n"], dtype=None
        )
        return prepared_layers(stored.layers, q, scope)

    return source


def results_key(
    features: Sequence[ModelFeatures],
    config: AlignConfig,
    models_x: Sequence[str],
    models_y: Sequence[str] | None = None,
) -> str:
    """The result-cache key of a run: everything its results depend on, hashed.

    Parameters
    ----------
    features : sequence of ModelFeatures
        The loaded models; each is identified by its store write id, dataset fingerprint and pooling.
    config : AlignConfig
        The whole config, as :meth:`AlignConfig.to_dict` (so no option that changes the numbers can be missed).
    models_x, models_y : sequences of str
        The model names of each side (``models_y=None``: X against itself).

    Returns
    -------
    str
        24 hex characters of a sha256 over the above and the prh version.
    """
    from prh._provenance import VERSION

    identity = {
        f.name: [f.info.get("write_id"), (f.info.get("dataset") or {}).get("fingerprint"), f.info.get("pool")]
        for f in features
    }
    blob = json.dumps(
        {
            "features": identity,
            "models_x": list(models_x),
            "models_y": list(models_y) if models_y is not None else None,
            "config": AlignConfig.coerce(config).to_dict(),
            "prh": VERSION,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]
