"""The alignment grid on a Ray cluster: the model-pair grid cut into tiles, one Ray task per tile.

The driver checks every model's stored features from the sidecars alone (no tensors are read there), lists the
model pairs exactly as :class:`prh.align.PairGrid` orders them, and cuts the (model X x model Y) grid into
square tiles of ``block_size`` models per side. Each task loads the features of its tile's models from the store
itself (it receives the store path and model names, never tensors) and runs the local pipeline
(:func:`prh.align.run_alignment`) on them; the driver merges the rows and layer grids back into the local
order. Each pair's numbers depend only on its two models (and the seed), so the result equals the local backend's.

Tiles of an X-against-itself grid: diagonal tiles score their block against itself; tiles above the diagonal
score block i against block j for every metric; tiles below it only for metrics that are not symmetric (whose
local grid holds every ordered pair).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prh.align.config import AlignConfig
from prh.align.engine import ModelFeatures, PairGrid, Results
from prh.align.pipeline import DatasetName
from prh.distributed.resources import (
    BASE_MEMORY,
    TRANSIENT_ERRORS,
    NodeLimits,
    RayOptions,
    TransientTaskError,
    describe_task_error,
    ray_session,
    task_error,
    wait_all,
)
from prh.errors import InputError, PrhError

__all__ = ["align_ray", "plan_tiles"]

logger = logging.getLogger(__name__)


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
        Every pair the local :class:`~prh.align.PairGrid` scores lies in exactly one tile, for the same
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
    dataset: DatasetName,
    fingerprint: str,
    root: str,
    config: AlignConfig,
    cache_dir: str | None,
) -> dict:
    """Body of one Ray task: the local pipeline on one tile; returns its rows (records), grids and model info."""
    from prh.align.pipeline import run_alignment
    from prh.features.store import FeatureStore

    try:
        results = run_alignment(
            specs_x, specs_y, FeatureStore(root), config, dataset=dataset, progress=False, cache_dir=cache_dir
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
    store: Any,
    config: AlignConfig | Mapping[str, Any] | None = None,
    *,
    dataset: Any,
    progress: bool = True,
    cache_dir: str | Path | None = None,
    ray: RayOptions | None = None,
) -> Results:
    """:func:`prh.align.run_alignment` on a Ray cluster: same arguments, same :class:`Results`.

    Parameters
    ----------
    models_x, models_y, config, dataset, progress
        As for :func:`~prh.align.run_alignment`; every tile task receives ``config`` (restricted to its metrics).
    store : FeatureStore
        Its root must be a path every Ray worker sees; it is made absolute here.
    cache_dir : path, optional
        Made absolute (it must be shared too): each tile's results are cached there under their
        :func:`~prh.align.results_key`, so a re-run recomputes only missing tiles.
    ray : RayOptions, optional
        Cluster address, retries, ``ray.init`` arguments and ``block_size`` (models per tile side; None: about
        ``sqrt(2 * cluster CPUs)`` blocks per side).

    Returns
    -------
    Results
        Table rows and grids in exactly the local order and with the same values; the provenance is the local
        one (with this run's wall time and the whole ``config``) plus ``provenance["backend"]``, which records the
        tiling.

    Raises
    ------
    MissingFeaturesError, InputError
        Checked on the driver before any task starts (missing features, features from different data, a bad
        config); an error inside a task is re-raised here as the original prh error.
    """
    from prh.align.pipeline import dataset_lookup, shuffled_control
    from prh.features.store import FeatureStore

    config = AlignConfig.coerce(config)
    options = ray if ray is not None else RayOptions()
    if not isinstance(options, RayOptions):
        raise InputError(f"ray={ray!r} must be a prh.distributed.RayOptions(address=..., block_size=...).")
    lookup = dataset_lookup(dataset)
    if not models_x:
        raise InputError("models_x is empty; give at least one model.")
    if cache_dir is not None:
        cache_dir = str(Path(cache_dir).expanduser().resolve())
    start = time.perf_counter()
    store = FeatureStore(Path(store.root).resolve())
    specs_x = list(models_x)
    specs_y = list(models_y) if models_y is not None else None
    specs = specs_x + [m for m in (specs_y or []) if m not in specs_x]
    by_name = {s.name: s for s in specs}
    pools = {s.name: config.pool or s.pool for s in specs}
    metas = store.find_many([s.name for s in specs], pools, **lookup)
    partial = [name for name, meta in metas.items() if "present" in (meta.get("per_sample") or [])]
    if partial:  # each tile would keep the items of its own models: the table's N would differ between tiles
        raise InputError(
            f"model(s) {partial} were imported with --subset (only some of the dataset's items); the Ray backend "
            f"cannot restrict every tile to the items all models share: use --backend local."
        )
    first = metas[specs[0].name]
    n_samples = int(first.get("n") or (first.get("dataset") or {}).get("n"))
    fingerprint = (first.get("dataset") or {}).get("fingerprint", "?")
    ds_name = (
        lookup["dataset"].name
        if lookup["dataset"] is not None
        else (first.get("dataset") or {}).get("name", lookup["dataset_name"])
    )

    # the local order of every (metric, control, x, y), from the PairGrid itself on tensor-free stand-ins
    stubs = {s.name: _stub(s, metas[s.name]) for s in specs}
    plan = PairGrid(
        [stubs[s.name] for s in specs_x],
        [stubs[s.name] for s in specs_y] if specs_y is not None else None,
        config,
        controls=shuffled_control(n_samples, config.seed) if config.shuffle_control else {},
    )
    keys = plan.plan()
    order = {Results.grid_key(*key): i for i, key in enumerate(keys)}

    names_x = [s.name for s in specs_x]
    names_y = [s.name for s in specs_y] if specs_y is not None else None
    block_size = options.block_size
    with ray_session(options.address, **options.init_kwargs) as ray_module:
        limits = NodeLimits.from_ray(ray_module)
        if block_size is None:
            cpus = max(1.0, float(ray_module.cluster_resources().get("CPU", 1)))
            per_side = max(1, math.ceil(math.sqrt(2 * cpus)))
            block_size = max(1, math.ceil(max(len(names_x), len(names_y or [])) / per_side))
        tiles = plan_tiles(names_x, names_y, config.metrics, block_size)
        remote = ray_module.remote(_align_task)
        refs: dict[Any, int] = {}
        for a, b, tile_metrics in tiles:
            memory = _tile_memory(metas, a + (b or []), n_samples)
            if limits.memory:
                memory = min(memory, int(limits.memory))
            task = remote.options(
                num_cpus=1,
                memory=memory,
                max_retries=options.max_retries,
                retry_exceptions=[TransientTaskError],
                name=f"prh-align:{a[0]}..{(b or a)[-1]}",
            )
            ref = task.remote(
                [by_name[x] for x in a],
                [by_name[y] for y in b] if b is not None else None,
                DatasetName(ds_name, n_samples),
                fingerprint,
                str(store.root),
                config.replace(metrics=tile_metrics),
                cache_dir,
            )
            refs[ref] = len(refs)
        logger.info(
            "submitted %d alignment task(s): %d pair score(s), %d model(s) per tile side",
            len(refs),
            len(keys),
            block_size,
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
            wait_all(ray_module, list(refs), done)
        finally:
            if bar is not None:
                bar.close()
        if failure:
            inner = task_error(failure[0])
            if isinstance(inner, PrhError) and not isinstance(inner, TransientTaskError):
                raise inner
            raise PrhError(
                f"an alignment task failed: {describe_task_error(failure[0], options.max_retries)}"
            )
    return _merge(
        outputs,
        order,
        names_x,
        names_y,
        specs,
        config,
        time.perf_counter() - start,
        {
            "name": "ray",
            "tasks": len(tiles),
            "block_size": block_size,
            "address": options.address,
            "max_retries": options.max_retries,
        },
    )


def _merge(outputs, order, names_x, names_y, specs, config, seconds, backend) -> Results:
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
        config=config.to_dict(),
        backend=backend,
    )
    return Results(table, ordered_grids, provenance)
