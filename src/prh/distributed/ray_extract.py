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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from prh.distributed.resources import (
    DEFAULT_MAX_RETRIES,
    TRANSIENT_ERRORS,
    NodeLimits,
    TransientTaskError,
    describe_task_error,
    estimate_extract_resources,
    ray_session,
    wait_all,
)
from prh.errors import InputError, PrhError

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


def _extract_task(
    spec,
    ref: DatasetRef,
    root: str,
    pool: str,
    device: str,
    dtype: str,
    batch_size: int,
    force: bool,
    trust_remote_code: bool,
    device_map: str | None,
) -> dict:
    """Body of one Ray task: extract one model and save it; returns the summary row (see :func:`extract_ray`).

    Raises :class:`TransientTaskError` (retried by Ray) for network/hub errors; every other error becomes a
    ``"failed"`` row (not retried).
    """
    from prh.features import extract
    from prh.features.extract import extract_and_save, summary_row
    from prh.features.store import FeatureStore

    node = socket.gethostname()
    row = {**summary_row(spec, pool), "node": node}
    try:
        dataset = ref.load()
        store = FeatureStore(root)
        if not force and store.has(dataset, spec.name, pool):  # another run (or an earlier attempt) wrote it
            return {**extract([spec], dataset, store, pool=pool, progress=False)[0], "node": node}
        row.update(
            extract_and_save(
                spec,
                dataset,
                store,
                pool,
                device=device,
                dtype=dtype,
                batch_size=batch_size,
                trust_remote_code=trust_remote_code,
                device_map=device_map,
                extra_meta={"node": node},
            )
        )
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
    pool: str | None = None,
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 16,
    force: bool = False,
    progress: bool = True,
    trust_remote_code: bool = False,
    device_map: str | None = None,
    stop_on_error: bool = False,
    log: Callable[[str], object] | None = None,
    *,
    address: str | None = None,
    dataset_options: dict | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    cpus_per_task: float = 1.0,
    init_kwargs: dict | None = None,
) -> list[dict]:
    """Extract and store per-layer features of every model on ``dataset``, one Ray task per model.

    Same arguments and summary rows as :func:`prh.features.extract`, plus:

    Parameters
    ----------
    store : FeatureStore
        Its root must be a path every Ray worker sees (shared filesystem); it is made absolute here.
    device : str
        ``"auto"`` gives a GPU to models of at least 10M parameters when the cluster has GPUs; ``"cuda"`` always
        asks for one GPU per model; ``"cpu"`` never does. Ray picks the GPU (``cuda:N`` means any GPU).
    address : str or None
        Ray cluster address (``"auto"``, ``"HOST:6379"``, ``"ray://HOST:10001"``); None: the Ray already running
        in this process, else ``RAY_ADDRESS``, else a new local Ray.
    dataset_options : dict, optional
        Options the workers pass to :func:`prh.data.load_dataset` with the dataset's name and N.
    max_retries : int
        Retries per model after its worker died or a transient (network/hub) error.
    cpus_per_task : float
        CPU slots per model task.
    init_kwargs : dict, optional
        More ``ray.init`` arguments (e.g. ``runtime_env``), used only when this call starts Ray.

    Returns
    -------
    list of dict
        One row per model in the order given (``status`` "extracted" | "cached" | "failed"), with ``node`` for
        models extracted on the cluster. With ``stop_on_error``, models not finished when the first failure
        arrived are cancelled and left out.
    """
    from prh.features import extract
    from prh.features.extract import _are_specs, summary_row
    from prh.features.store import FeatureStore
    from prh.models.base import check_pool
    from prh.models.registry import resolve_models

    specs = list(models) if _are_specs(models) else resolve_models(models)
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise InputError(f"max_retries must be an integer >= 0, got {max_retries!r}.")
    pools, bad = {}, []
    for spec in specs:
        try:
            pools[spec.name] = check_pool(spec, pool)
        except InputError as err:
            bad.append(str(err))
    if bad:
        raise InputError(" ".join(bad) + " Leave --pool out to use each model's default.")
    say = log or (lambda _msg: None)
    store = FeatureStore(Path(store.root).resolve())
    rows: dict[str, dict] = {}
    cached = [s for s in specs if not force and store.has(dataset, s.name, pools[s.name])]
    if cached:  # the local loop only reads sidecars for these: nothing is loaded
        for row in extract(cached, dataset, store, pool=pool, progress=False, log=log):
            rows[row["model"]] = row
    todo = [s for s in specs if s.name not in rows]
    if not todo:
        return [rows[s.name] for s in specs]
    ref = DatasetRef.of(dataset, dataset_options)
    with ray_session(address, **(init_kwargs or {})) as ray:
        limits = NodeLimits.from_ray(ray)
        remote = ray.remote(_extract_task)
        refs = {}
        for spec in todo:
            res = estimate_extract_resources(
                spec,
                device=device,
                dtype=dtype,
                device_map=device_map,
                limits=limits,
                cpus_per_task=cpus_per_task,
            )
            for note in res.notes:
                say(f"{spec.name}: {note}")
            task = remote.options(
                **res.options(),
                max_retries=max_retries,
                retry_exceptions=[TransientTaskError],
                name=f"prh-extract:{spec.name}",
            )
            ref_ = task.remote(
                spec,
                ref,
                str(store.root),
                pools[spec.name],
                res.device,
                dtype,
                batch_size,
                force,
                trust_remote_code,
                device_map,
            )
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
                    "error": describe_task_error(error, max_retries),
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
            return stop_on_error and row["status"] == "failed"

        try:
            wait_all(ray, list(refs), done)
        finally:
            if bar is not None:
                bar.close()
    return [rows[s.name] for s in specs if s.name in rows]
