"""The extraction loop: every model of a list over one paired dataset, into the feature store.

Each model is independent: features already in the store with a matching dataset fingerprint are skipped (unless
``force``), a model that fails is reported and the loop goes on, and nothing already stored is ever deleted.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

import torch

from prh.errors import InputError, PrhError
from prh.models.base import check_pool
from prh.models.factory import build_adapter
from prh.models.registry import resolve_models
from prh.models.spec import ModelSpec


def _dims(dims: list[int]) -> str:
    lo, hi = min(dims), max(dims)
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def summary_row(spec: ModelSpec, pool: str) -> dict:
    """An empty per-model summary row (the columns both backends report)."""
    return {
        "model": spec.name,
        "modality": spec.modality,
        "pool": pool,
        "status": "",
        "time_s": None,
        "samples_per_s": None,
        "layers": None,
        "dim": None,
        "bpb": None,
        "path": None,
        "error": None,
    }


def extract_and_save(
    spec: ModelSpec,
    dataset,
    store,
    pool: str,
    device: str = "auto",
    dtype: str = "float32",
    batch_size: int = 16,
    trust_remote_code: bool = False,
    device_map: str | None = None,
    progress=None,
    extra_meta: dict | None = None,
) -> dict:
    """Load one model, extract its features on ``dataset`` and store them; returns the filled summary row.

    Errors propagate (the caller decides whether to go on, retry or stop); the adapter is freed either way.
    """
    row = summary_row(spec, pool)
    start = time.perf_counter()
    adapter = None
    try:
        adapter = build_adapter(
            spec, device=device, dtype=dtype, device_map=device_map, trust_remote_code=trust_remote_code
        )
        result = adapter.extract(dataset, batch_size=batch_size, pool=pool, progress=progress)
        result.meta["load_and_extract_s"] = round(time.perf_counter() - start, 3)
        result.meta.update(extra_meta or {})
        path = store.save(
            dataset, spec.name, pool, result.layers, result.layer_names, result.per_sample, result.meta
        )
    finally:
        del adapter
        _free()
    row.update(
        status="extracted",
        time_s=result.meta["wall_time_s"],
        samples_per_s=result.meta.get("samples_per_s"),
        layers=len(result.layers),
        dim=_dims(result.dims),
        bpb=result.meta.get("bits_per_byte"),
        path=str(path),
        load_s=round(time.perf_counter() - start - result.meta["wall_time_s"], 3),
    )
    return row


def extract(
    models: list[ModelSpec] | str,
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
) -> list[dict]:
    """Extract and store per-layer features of every model on ``dataset``.

    Parameters
    ----------
    models : list of ModelSpec or str
        Specs, or a string for :func:`prh.models.resolve_models` (``"offline"``, ``"minilm-l6,effnet-lite0"``).
    dataset : PairedDataset
        Language models read captions (caption 0), vision models images.
    store : FeatureStore
        Where features go (``<root>/<dataset>-n<N>/<model>__<pool>.safetensors`` + JSON sidecar).
    pool : str or None
        Pooling for every model (None: each model's default). Checked for all models before any work starts.
    device, dtype, device_map, trust_remote_code
        Passed to :func:`prh.models.build_adapter`.
    batch_size : int
        Samples per forward pass.
    force : bool
        Recompute even when matching features are stored.
    progress : bool
        Show a tqdm progress bar per model.
    stop_on_error : bool
        Stop at the first failing model (default: go on with the others).
    log : callable, optional
        Receives one line per event (skips, failures).

    Returns
    -------
    list of dict
        One summary per model: ``model``, ``status`` ("extracted" | "cached" | "failed"), ``pool``, ``time_s``,
        ``samples_per_s``, ``layers``, ``dim``, ``bpb``, ``path``, ``error``.
    """
    specs = (
        resolve_models(models) if isinstance(models, str | list) and not _are_specs(models) else list(models)
    )
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
    pools = {}
    bad = []
    for spec in specs:  # validate everything before loading anything
        try:
            pools[spec.name] = check_pool(spec, pool)
        except InputError as err:
            bad.append(str(err))
    if bad:
        raise InputError(" ".join(bad) + " Leave --pool out to use each model's default.")
    say = log or (lambda _msg: None)
    summaries: list[dict] = []
    n = len(dataset)
    for spec in specs:
        p = pools[spec.name]
        row = summary_row(spec, p)
        summaries.append(row)
        if not force and store.has(dataset, spec.name, p):
            row["status"] = "cached"
            row["path"] = str(store.path(dataset, spec.name, p))
            try:
                meta = store.load(dataset, spec.name, p).meta
                row.update(
                    layers=meta.get("n_layers"),
                    dim=_dims(meta["dims"]) if meta.get("dims") else None,
                    bpb=meta.get("bits_per_byte"),
                    samples_per_s=meta.get("samples_per_s"),
                )
            except Exception:  # noqa: BLE001 - the summary is cosmetic
                pass
            say(f"{spec.name}: features already stored ({row['path']}); skipping (use --force to recompute)")
            continue
        bar = None
        try:
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n, desc=spec.name, unit="sample", leave=False, dynamic_ncols=True)
            row.update(
                extract_and_save(
                    spec,
                    dataset,
                    store,
                    p,
                    device=device,
                    dtype=dtype,
                    batch_size=batch_size,
                    trust_remote_code=trust_remote_code,
                    device_map=device_map,
                    progress=bar,
                )
            )
        except (PrhError, Exception) as err:  # noqa: BLE001 - one model failing must not stop the others
            row.update(
                status="failed",
                error=str(err) if isinstance(err, PrhError) else f"{type(err).__name__}: {err}",
            )
            say(f"{spec.name}: FAILED: {row['error']}")
            if stop_on_error:
                break
        finally:
            if bar is not None:
                bar.close()
    return summaries


def _are_specs(models) -> bool:
    return isinstance(models, list) and all(isinstance(m, ModelSpec) for m in models)
