"""The alignment grid on a Ray cluster: the model-pair grid cut into tiles, one Ray task per tile.

The driver checks every model's stored features from the sidecars alone (no tensors are read there), lists the
model pairs exactly as :class:`prh.align.Experiment` orders them, and cuts the (model X x model Y) grid into
square tiles of ``block_size`` models per side. Each task loads the features of its tile's models from the store
itself (it receives the store path and model names, never tensors) and runs the local pipeline
(:func:`prh.align.run_alignment`) on them; the driver merges the rows and layer grids back into the local
order. Each pair's numbers depend only on its two models (and the seed), so the result equals the local backend's.

Tiles of an X-against-itself grid: diagonal tiles score their block against itself; tiles above the diagonal
score block i against block j for every metric; tiles below it only for metrics that are not symmetric (whose
local grid holds every ordered pair).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from prh.align.engine import DEFAULT_METRICS, Experiment, ModelFeatures, Results
from prh.distributed.resources import (
    BASE_MEMORY,
    DEFAULT_MAX_RETRIES,
    TRANSIENT_ERRORS,
    NodeLimits,
    TransientTaskError,
    describe_task_error,
    ray_session,
    task_error,
    wait_all,
)
from prh.errors import InputError, PrhError

__all__ = ["align_ray", "plan_tiles"]


def _stub(spec, meta: dict) -> ModelFeatures:
    """A tensor-free :class:`ModelFeatures` with the info the pipeline would build (to enumerate pairs)."""
    info = {**meta, "model": spec.name}
    info.setdefault("modality", spec.modality)
    info.setdefault("family", spec.family)
    if info.get("params") is None:
        info["params"] = spec.params
    info.setdefault("competence", dict(spec.competence))
    return ModelFeatures(spec.name, [], info)


def plan_tiles(
    names_x: Sequence[str], names_y: Sequence[str] | None, metrics: Sequence[str], block_size: int
) -> list[tuple[list[str], list[str] | None, list[str]]]:
    """Cut the model-pair grid into tiles: ``[(block of X, block of Y or None for a diagonal tile, metrics)]``.

    Parameters
    ----------
    names_x, names_y : model names; ``names_y=None`` scores X against itself.
    metrics : metric names.
    block_size : models per tile side (>= 1).

    Returns
    -------
    list of tuples
        Every pair the local :class:`~prh.align.Experiment` scores lies in exactly one tile, for the same
        metrics: with ``names_y=None``, tile (i, i) is ``(block_i, None, metrics)``, tile (i, j), i < j, is
        ``(block_i, block_j, metrics)`` and tile (i, j), i > j, is ``(block_i, block_j, non-symmetric metrics)``.
    """
    from prh.metrics import spec as metric_spec

    def blocks(names):
        return [list(names[i : i + block_size]) for i in range(0, len(names), block_size)]

    bx = blocks(list(names_x))
    if names_y is not None:
        return [(a, b, list(metrics)) for a in bx for b in blocks(list(names_y))]
    ordered = [m for m in metrics if not metric_spec(m).symmetric]
    tiles = []
    for i, a in enumerate(bx):
        for j, b in enumerate(bx):
            if i == j:
                tiles.append((a, None, list(metrics)))
            elif i < j:
                tiles.append((a, b, list(metrics)))
            elif ordered:
                tiles.append((a, b, ordered))
    return tiles


def _align_task(
    specs_x: list,
    specs_y: list | None,
    dataset_name: str,
    n: int,
    fingerprint: str,
    root: str,
    options: dict,
) -> dict:
    """Body of one Ray task: the local pipeline on one tile; returns its rows (records), grids and model info."""
    from prh.align.pipeline import run_alignment
    from prh.features.store import FeatureStore

    try:
        results = run_alignment(
            specs_x, specs_y, dataset_name, n, FeatureStore(root), progress=False, **options
        )
    except TRANSIENT_ERRORS as err:
        raise TransientTaskError(str(err)) from err
    found = (results.provenance.get("dataset") or {}).get("fingerprint")
    if found != fingerprint:
        raise InputError(
            f"the features this task read from {root} have dataset fingerprint {str(found)[:12]}, the driver's "
            f"{fingerprint[:12]}: the store changed during the run (or the workers see another store). Re-run."
        )
    return {
        "columns": list(results.table.columns),
        "rows": results.table.to_dict(orient="records"),
        "grids": dict(results.grids),
        "provenance": results.provenance,
    }


def _tile_memory(metas: dict[str, dict], names: list[str], n: int) -> int:
    """Host memory of one tile: the prepared features (three copies) and per-layer caches (N x N) of its models."""
    total = 0
    for name in dict.fromkeys(names):
        dims = metas[name].get("layer_dims") or []
        total += 3 * 4 * n * sum(int(d) for d in dims) + 8 * n * n * len(dims)
    return int(BASE_MEMORY // 2 + total)


def align_ray(
    models_x: Sequence[Any],
    models_y: Sequence[Any] | None,
    dataset_name: str,
    n: int | None,
    store: Any,
    dataset: Any = None,
    *,
    progress: bool = True,
    address: str | None = None,
    block_size: int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    init_kwargs: dict | None = None,
    log: Callable[[str], object] | None = None,
    **options: Any,
) -> Results:
    """:func:`prh.align.run_alignment` on a Ray cluster: same arguments, same :class:`Results`.

    Parameters
    ----------
    models_x, models_y, dataset_name, n, dataset, progress
        As for :func:`~prh.align.run_alignment`.
    store : FeatureStore
        Its root must be a path every Ray worker sees; it is made absolute here.
    address : str or None
        Ray cluster address; see :func:`prh.distributed.extract_ray`.
    block_size : int or None
        Models per tile side; a task loads at most ``2 * block_size`` models. None: about
        ``sqrt(2 * cluster CPUs)`` blocks per side.
    max_retries : int
        Retries of a tile whose worker died or that met a transient error.
    **options
        Every other keyword of :func:`~prh.align.run_alignment` (``metrics``, ``k``, ``calibrate``,
        ``bootstrap``, ``seed``, ``q``, ``pool``, ``shuffle_control``, ...), passed to each tile. A ``cache_dir``
        (made absolute; must be shared too) caches each tile's results, so a re-run recomputes only missing tiles.

    Returns
    -------
    Results
        Table rows and grids in exactly the local order and with the same values; the provenance is the local
        one (with this run's wall time) plus ``provenance["backend"]``, which records the tiling.

    Raises
    ------
    MissingFeaturesError, InputError
        Checked on the driver before any task starts (missing features, features from different data, unknown
        metrics or options); an error inside a task is re-raised here as the original prh error.
    """
    import inspect

    from prh.align.pipeline import run_alignment, shuffled_control
    from prh.features.store import FeatureStore
    from prh.metrics import spec as metric_spec

    accepted = set(inspect.signature(run_alignment).parameters) - {
        "models_x",
        "models_y",
        "dataset_name",
        "n",
        "store",
        "dataset",
        "progress",
    }
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise InputError(
            f"align_ray got unknown option(s) {unknown}; run_alignment accepts {sorted(accepted)}."
        )
    metrics = list(options.get("metrics", DEFAULT_METRICS))
    options["metrics"] = metrics
    if not metrics:
        raise InputError("metrics is empty; give at least one metric name.")
    for metric in metrics:
        metric_spec(metric)  # unknown names fail here, with suggestions
    if not models_x:
        raise InputError("models_x is empty; give at least one model.")
    calibrate = options.get("calibrate", 0)
    if isinstance(calibrate, bool) or not isinstance(calibrate, int) or calibrate < 0:
        raise InputError(f"calibrate={calibrate!r} must be a number of permutations K >= 0 (0 = off).")
    if block_size is not None and (
        isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1
    ):
        raise InputError(f"block_size must be a positive integer (models per tile side), got {block_size!r}.")
    if options.get("cache_dir") is not None:
        options["cache_dir"] = str(Path(options["cache_dir"]).expanduser().resolve())
    say = log or (lambda _msg: None)
    start = time.perf_counter()
    store = FeatureStore(Path(store.root).resolve())
    specs_x = list(models_x)
    specs_y = list(models_y) if models_y is not None else None
    specs = specs_x + [m for m in (specs_y or []) if m not in specs_x]
    by_name = {s.name: s for s in specs}
    pools = {s.name: options.get("pool") or s.pool for s in specs}
    metas = store.find_many([s.name for s in specs], pools, dataset=dataset, dataset_name=dataset_name, n=n)
    first = metas[specs[0].name]
    n_samples = int(first.get("n") or (first.get("dataset") or {}).get("n"))
    fingerprint = (first.get("dataset") or {}).get("fingerprint", "?")
    ds_name = dataset.name if dataset is not None else (first.get("dataset") or {}).get("name", dataset_name)

    # the local order of every (metric, control, x, y), from the Experiment itself on tensor-free stand-ins
    stubs = {s.name: _stub(s, metas[s.name]) for s in specs}
    seed = options.get("seed", 0)
    plan = Experiment(
        [stubs[s.name] for s in specs_x],
        [stubs[s.name] for s in specs_y] if specs_y is not None else None,
        metrics=metrics,
        controls=shuffled_control(n_samples, seed) if options.get("shuffle_control") else {},
    )
    keys = plan.plan()
    order = {Results.grid_key(*key): i for i, key in enumerate(keys)}

    names_x = [s.name for s in specs_x]
    names_y = [s.name for s in specs_y] if specs_y is not None else None
    with ray_session(address, **(init_kwargs or {})) as ray:
        limits = NodeLimits.from_ray(ray)
        if block_size is None:
            per_side = max(
                1, math.ceil(math.sqrt(2 * max(1.0, float(ray.cluster_resources().get("CPU", 1)))))
            )
            block_size = max(1, math.ceil(max(len(names_x), len(names_y or [])) / per_side))
        tiles = plan_tiles(names_x, names_y, metrics, block_size)
        remote = ray.remote(_align_task)
        refs: dict[Any, int] = {}
        for a, b, tile_metrics in tiles:
            memory = _tile_memory(metas, a + (b or []), n_samples)
            if limits.memory:
                memory = min(memory, int(limits.memory))
            task = remote.options(
                num_cpus=1,
                memory=memory,
                max_retries=max_retries,
                retry_exceptions=[TransientTaskError],
                name=f"prh-align:{a[0]}..{(b or a)[-1]}",
            )
            ref = task.remote(
                [by_name[x] for x in a],
                [by_name[y] for y in b] if b is not None else None,
                ds_name,
                n_samples,
                fingerprint,
                str(store.root),
                {**options, "metrics": tile_metrics},
            )
            refs[ref] = len(refs)
        say(
            f"submitted {len(refs)} alignment task(s): {len(keys)} pair score(s), {block_size} model(s) per tile side"
        )
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(keys), desc="alignment", unit="pair", dynamic_ncols=True)
        outputs: dict[int, dict] = {}
        failure: list[BaseException] = []

        def done(ref, value, error) -> bool:
            if error is not None:
                failure.append(error)
                return True
            outputs[refs[ref]] = value
            if bar is not None:
                bar.update(len(value["rows"]))
            return False

        try:
            wait_all(ray, list(refs), done)
        finally:
            if bar is not None:
                bar.close()
        if failure:
            inner = task_error(failure[0])
            if isinstance(inner, PrhError) and not isinstance(inner, TransientTaskError):
                raise inner
            raise PrhError(f"an alignment task failed: {describe_task_error(failure[0], max_retries)}")
    return _merge(
        outputs,
        order,
        names_x,
        names_y,
        specs,
        time.perf_counter() - start,
        {
            "name": "ray",
            "tasks": len(tiles),
            "block_size": block_size,
            "address": address,
            "max_retries": max_retries,
        },
    )


def _merge(outputs, order, names_x, names_y, specs, seconds, backend) -> Results:
    """Rows and grids of all tiles in the local order, and the local provenance of the whole grid."""
    import pandas as pd

    rows: list[tuple[int, dict]] = []
    grids: dict[str, Any] = {}
    models: dict[str, dict] = {}
    columns = provenance = None
    for i in sorted(outputs):
        out = outputs[i]
        columns = columns or out["columns"]
        provenance = provenance or dict(out["provenance"])
        models.update(out["provenance"].get("models") or {})
        for row in out["rows"]:
            key = Results.grid_key(row["metric"], row["control"], row["model_x"], row["model_y"])
            if key not in order:
                raise PrhError(f"internal error: a tile returned the unexpected pair {key!r}")
            rows.append((order[key], row))
        grids.update(out["grids"])
    found = sorted(i for i, _ in rows)
    if found != list(range(len(order))):
        raise PrhError(
            f"internal error: the tiles returned {len(found)} rows for {len(order)} expected pair scores"
        )
    rows.sort(key=lambda item: item[0])
    table = pd.DataFrame([r for _, r in rows], columns=columns)
    ordered_grids = {key: grids[key] for key in sorted(order, key=order.__getitem__)}
    provenance = dict(provenance or {})
    provenance.pop("cache_key", None)  # a tile's key, not the whole grid's
    provenance.update(
        wall_time_s=round(seconds, 3),
        models_x=list(names_x),
        models_y=list(names_y) if names_y is not None else None,
        models={s.name: models[s.name] for s in specs if s.name in models},
        backend=backend,
    )
    return Results(table, ordered_grids, provenance)
