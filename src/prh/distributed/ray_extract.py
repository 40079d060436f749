"""Feature extraction on a Ray cluster: one Ray task per model, written to the same feature store.

The driver validates everything first (model names, poolings), skips models whose features are already stored for
this dataset (same fingerprint), and submits one task per remaining model with resources from a size estimate
(:func:`prh.distributed.resources.estimate_extract_resources`). Each task rebuilds the dataset from its name, N
and options, checks that its fingerprint equals the driver's, checks the store again, extracts, and saves
atomically into the store root, which must be a path every worker sees (a shared filesystem). A worker that dies
is replaced and its task retried (``max_retries``); transient errors (hub or network hiccups) are retried too;
any other error (a missing model file, a pooling the model does not support, NaN features) fails that model at
once and the others go on. The summary rows are the local backend's (:func:`prh.features.extract`), plus
``node`` (the host that ran the task).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prh.distributed.resources import (
    TRANSIENT_ERRORS,
    NodeLimits,
    RayOptions,
    TransientTaskError,
    describe_task_error,
    estimate_extract_resources,
    ray_session,
    wait_all,
)
from prh.errors import InputError, PrhError
from prh.features import ExtractConfig

__all__ = ["DatasetRef", "extract_ray"]


@dataclass(frozen=True)
class DatasetRef:
    """How a worker rebuilds the driver's dataset: ``load_dataset(name, n=n, **options)``, then a fingerprint check.

    Attributes
    ----------
    name : str
        The dataset's ``name`` (accepted back by :func:`prh.data.load_dataset`; folders are absolute paths).
    n : int
        Number of items.
    fingerprint : str
        The driver's fingerprint; a worker that sees other data refuses to extract.
    options : dict
        Extra ``load_dataset`` options (e.g. ``{"image_size": 224}``).
    """

    name: str
    n: int
    fingerprint: str
    options: dict = field(default_factory=dict)

    @classmethod
    def of(cls, dataset, options: dict | None = None) -> DatasetRef:
        return cls(str(dataset.name), len(dataset), str(dataset.fingerprint()), dict(options or {}))

    def load(self):
        """The dataset, rebuilt here; InputError when it is not the driver's (another copy, another revision)."""
        from prh.data import load_dataset

        dataset = load_dataset(self.name, n=self.n, **self.options)
        found = dataset.fingerprint()
        if found != self.fingerprint:
            raise InputError(
                f"dataset {self.name!r} (N={self.n}) on node {socket.gethostname()} has fingerprint {found[:12]}, "
                f"but the driver's has {self.fingerprint[:12]}: the workers see different data. Put the dataset "
                f"on a filesystem every node mounts at the same path (or pin the hub revision) and re-run."
            )
        return dataset


def _extract_task(spec, ref: DatasetRef, root: str, config: ExtractConfig) -> dict:
    """Body of one Ray task: extract one model and save it; returns the summary row (see :func:`extract_ray`).

    ``config`` is the driver's, with the device this task was given. Raises :class:`TransientTaskError` (retried
    by Ray) for network/hub errors; every other error becomes a ``"failed"`` row (not retried).
    """
    from prh.features import extract, extract_and_save, summary_row
    from prh.features.store import FeatureStore
    from prh.models.base import check_pool

    node = socket.gethostname()
    pool = check_pool(spec, config.pool)
    row = {**summary_row(spec, pool), "node": node}
    try:
        dataset = ref.load()
        store = FeatureStore(root)
        if not config.force and store.has(dataset, spec.name, pool):  # another run (or attempt) wrote it
            return {**extract([spec], dataset, store, config, progress=False)[0], "node": node}
        row.update(extract_and_save(spec, dataset, store, config, extra_meta={"node": node}))
    except TRANSIENT_ERRORS as err:
        raise TransientTaskError(f"{spec.name}: {err}") from err
    except Exception as err:  # noqa: BLE001 - a user or model error: report it, do not retry
        row.update(
            status="failed", error=str(err) if isinstance(err, PrhError) else f"{type(err).__name__}: {err}"
        )
    return row


def extract_ray(
    models,
    dataset,
    store,
    config: ExtractConfig | Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
    log: Callable[[str], object] | None = None,
    dataset_options: dict | None = None,
    ray: RayOptions | None = None,
) -> list[dict]:
    """Extract and store per-layer features of every model on ``dataset``, one Ray task per model.

    Same arguments and summary rows as :func:`prh.features.extract`, plus:

    Parameters
    ----------
    store : FeatureStore
        Its root must be a path every Ray worker sees (shared filesystem); it is made absolute here.
    config : ExtractConfig, optional
        As for :func:`prh.features.extract`. Its ``device``: ``"auto"`` gives a GPU to models of at least 10M
        parameters when the cluster has GPUs; ``"cuda"`` always asks for one GPU per model; ``"cpu"`` never does.
        Ray picks the GPU (``cuda:N`` means any GPU).
    dataset_options : dict, optional
        Options the workers pass to :func:`prh.data.load_dataset` with the dataset's name and N.
    ray : RayOptions, optional
        Cluster address, retries per model (after its worker died or a transient network/hub error),
        ``cpus_per_task`` and ``ray.init`` arguments.

    Returns
    -------
    list of dict
        One row per model in the order given (``status`` "extracted" | "cached" | "failed"), with ``node`` for
        models extracted on the cluster. With ``config.stop_on_error``, models not finished when the first failure
        arrived are cancelled and left out.
    """
    from prh.features import are_specs, check_pools, extract, summary_row
    from prh.features.store import FeatureStore
    from prh.models.registry import resolve_models
    from prh.models.trust import refuse_ungranted

    config = ExtractConfig.coerce(config)
    options = ray if ray is not None else RayOptions()
    if not isinstance(options, RayOptions):
        raise InputError(f"ray={ray!r} must be a prh.distributed.RayOptions(address=..., max_retries=...).")
    specs = list(models) if are_specs(models) else resolve_models(models)
    pools = check_pools(specs, config.pool)
    refuse_ungranted(specs, config.trust_remote_code)  # a file's request for code needs the caller's grant
    say = log or (lambda _msg: None)
    store = FeatureStore(Path(store.root).resolve())
    rows: dict[str, dict] = {}
    cached = [s for s in specs if not config.force and store.has(dataset, s.name, pools[s.name])]
    if cached:  # the local loop only reads sidecars for these: nothing is loaded
        for row in extract(cached, dataset, store, config, progress=False, log=log):
            rows[row["model"]] = row
    todo = [s for s in specs if s.name not in rows]
    if not todo:
        return [rows[s.name] for s in specs]
    ref = DatasetRef.of(dataset, dataset_options)
    with ray_session(options.address, **options.init_kwargs) as ray_module:
        limits = NodeLimits.from_ray(ray_module)
        remote = ray_module.remote(_extract_task)
        refs = {}
        for spec in todo:
            res = estimate_extract_resources(
                spec,
                device=config.device,
                dtype=config.dtype,
                device_map=config.device_map,
                limits=limits,
                cpus_per_task=options.cpus_per_task,
            )
            for note in res.notes:
                say(f"{spec.name}: {note}")
            task = remote.options(
                **res.options(),
                max_retries=options.max_retries,
                retry_exceptions=[TransientTaskError],
                name=f"prh-extract:{spec.name}",
            )
            ref_ = task.remote(spec, ref, str(store.root), config.replace(device=res.device))
            refs[ref_] = spec
        say(f"submitted {len(refs)} Ray task(s) ({len(cached)} model(s) already stored)")
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(refs), desc="models", unit="model", dynamic_ncols=True)

        def done(ref_, value, error) -> bool:
            spec = refs[ref_]
            if error is not None:
                row = {
                    **summary_row(spec, pools[spec.name]),
                    "status": "failed",
                    "error": describe_task_error(error, options.max_retries),
                    "node": None,
                }
            else:
                row = value
            rows[spec.name] = row
            if bar is not None:
                bar.update(1)
                bar.set_postfix_str(f"{spec.name}: {row['status']}")
            if row["status"] == "failed":
                say(f"{spec.name}: FAILED: {row['error']}")
            else:
                say(f"{spec.name}: {row['status']} on {row.get('node')} ({row['path']})")
            return config.stop_on_error and row["status"] == "failed"

        try:
            wait_all(ray_module, list(refs), done)
        finally:
            if bar is not None:
                bar.close()
    return [rows[s.name] for s in specs if s.name in rows]
