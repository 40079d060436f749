"""The extraction loop: every model of a list over one paired dataset, into the feature store.

Each model is independent: features already in the store with a matching dataset fingerprint are skipped (unless
``force``), a model that fails is reported and the loop goes on, and nothing already stored is ever deleted.
Datasets bigger than ``ExtractConfig.shard_size`` are extracted in resumable shards (:mod:`prh.features.shards`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib.util
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch

from prh._validation import ConfigFields, check_bool, check_choice, check_int
from prh.errors import InputError, PrhError
from prh.features.shards import RowRange, ShardFolder, remove_shards, run_shards, shard_folder
from prh.models.base import check_pool
from prh.models.batching import call_progress
from prh.models.device import DTYPES, dtype_name
from prh.models.factory import build_adapter
from prh.models.loader import check_workers
from prh.models.registry import resolve_models
from prh.models.spec import ModelSpec
from prh.models.trust import refuse_ungranted

#: Rows per shard of a resumable extraction (see :class:`ExtractConfig`).
DEFAULT_SHARD_SIZE = 4096


@dataclass(frozen=True)
class ExtractConfig(ConfigFields):
    """Every option of feature extraction (frozen; validated when built), shared by :func:`extract`,
    :func:`prh.distributed.extract_ray` and `prh extract` (which builds one from its flags).

    Parameters
    ----------
    pool : str or None, default None
        Pooling for every model: ``"mean"``, ``"last"`` or ``"cls"`` (None: each model's default). Whether each
        model supports it is checked for all models before any work starts.
    device : str, default "auto"
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ... (any torch device name).
    dtype : str, default "float32"
        Weight dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` (or an alias such as ``"bf16"``; stored under
        its canonical name) or ``"auto"`` (bfloat16 on a CUDA device that supports it, else float32).
    batch_size : int, default 16
        Samples per forward pass, >= 1 (the features do not depend on it).
    force : bool, default False
        Recompute even when matching features are stored.
    trust_remote_code : bool, default False
        Grant hub repositories' own Python code (off unless you turn it on). A models-file entry's
        ``trust_remote_code = true`` only asks: without this grant it is refused before any work starts; with it,
        one warning line per model names the files transformers imports.
    device_map : str or None, default None
        e.g. ``"auto"``: spread a big Hugging Face model over all GPUs (needs accelerate).
    stop_on_error : bool, default False
        Stop at the first model that fails (default: report it and go on with the others).
    workers : int or "auto", default "auto"
        Processes that decode and transform the next images while a vision model runs (0: none, images are
        prepared between forward passes). ``"auto"``: none for fewer than 4 batches; else ``min(4, CPUs - 1)``
        when the model runs on a GPU, and on the CPU only the cores torch's threads leave free
        (``min(4, CPUs - torch.get_num_threads())``, none by default). The features are bit-identical whatever
        the number.
    shard_size : int, default 4096
        For more rows than this, rows are extracted ``shard_size`` at a time and each shard is written to a
        temporary file as it is done: a killed extraction resumes from its last complete shard (same settings,
        with or without ``force``), and the store entry is written as usual at the end (the shards are then
        removed). 0: never shard.

    ``to_dict()`` / ``from_dict()`` / ``replace(**changes)`` / ``ExtractConfig.coerce(...)`` as for
    :class:`prh.align.AlignConfig`.

    Raises
    ------
    InputError
        A value of the wrong type or out of range; the message names the field and the values it accepts.
    """

    pool: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    batch_size: int = 16
    force: bool = False
    trust_remote_code: bool = False
    device_map: str | None = None
    stop_on_error: bool = False
    workers: int | str = "auto"
    shard_size: int = DEFAULT_SHARD_SIZE

    def __post_init__(self) -> None:
        from prh.models.spec import POOLS

        clean: dict[str, Any] = {
            "pool": None if self.pool is None else check_choice(self.pool, "pool", POOLS),
            "device": _check_device(self.device),
            "dtype": _check_dtype(self.dtype),
            "batch_size": check_int(
                self.batch_size, "batch_size", minimum=1, hint="samples per forward pass"
            ),
            "force": check_bool(self.force, "force"),
            "trust_remote_code": check_bool(self.trust_remote_code, "trust_remote_code"),
            "device_map": self.device_map,
            "stop_on_error": check_bool(self.stop_on_error, "stop_on_error"),
            "workers": check_workers(self.workers),
            "shard_size": check_int(
                self.shard_size, "shard_size", minimum=0, hint="rows per resumable shard; 0 = never shard"
            ),
        }
        if self.device_map is not None and (not isinstance(self.device_map, str) or not self.device_map):
            raise InputError(f"device_map={self.device_map!r} must be a string such as 'auto', or None.")
        for name, value in clean.items():
            object.__setattr__(self, name, value)


def _check_device(device: object) -> str:
    """A torch device name or ``"auto"`` (not checked against the hardware here: a Ray worker may have a GPU)."""
    if not isinstance(device, str):
        raise InputError(f"device={device!r} must be a device name such as 'auto', 'cpu' or 'cuda:0'.")
    if device != "auto":
        try:
            torch.device(device)
        except (RuntimeError, TypeError) as err:
            raise InputError(
                f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
            ) from err
    return device


def _check_dtype(dtype: object) -> str:
    """A dtype name (aliases such as ``"bf16"`` -> ``"bfloat16"``) or ``"auto"``."""
    key = str(dtype).lower().replace("torch.", "") if isinstance(dtype, str) else None
    if key == "auto":
        return key
    if key not in DTYPES:
        raise InputError(f"dtype={dtype!r} is not supported; use one of float32, float16, bfloat16, auto.")
    return str(DTYPES[key]).replace("torch.", "")


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
    config: ExtractConfig | None = None,
    progress=None,
    extra_meta: dict | None = None,
) -> dict:
    """Load one model, extract its features on ``dataset`` and store them; returns the filled summary row.

    ``config`` gives the pooling (checked against the model), device, dtype, device map, remote-code permission,
    batch size, image workers and shard size (its ``force`` and ``stop_on_error`` concern the loop of
    :func:`extract`). With more rows than ``config.shard_size`` the rows are extracted in shards written as they are
    done, the complete shards of an earlier killed run with the same settings are reused, and the shards are removed
    once the entry is stored (the row then says ``resumed_rows`` when some were reused). Errors propagate (the
    caller decides whether to go on, retry or stop; finished shards stay for the next run); the adapter is freed
    either way.
    """
    config = ExtractConfig.coerce(config)
    pool = check_pool(spec, config.pool)
    row = summary_row(spec, pool)
    start = time.perf_counter()
    if spec.adapter == "imported":  # a models-file entry of embeddings computed elsewhere: import its files
        from prh.features._import import config_of_spec, import_features, spec_files

        report = import_features(
            spec.name, spec_files(spec), dataset, store, config_of_spec(spec).replace(pool=pool)
        )
        row.update(status="imported", time_s=round(time.perf_counter() - start, 3), path=str(report.path))
        row.update(layers=len(report.dims), dim=_dims(report.dims))
        return row
    adapter = None
    try:
        adapter = build_adapter(
            spec,
            device=config.device,
            dtype=config.dtype,
            device_map=config.device_map,
            trust_remote_code=config.trust_remote_code,
        )
        shards = None
        if 0 < config.shard_size < len(dataset):
            entry = store.path(dataset, spec.name, pool)
            shards = ShardFolder(shard_folder(entry), shard_key(spec, pool, dataset, adapter, config))
            result, reused = extract_sharded(adapter, dataset, pool, config, shards, progress)
            if reused:
                row["resumed_rows"] = reused
        else:
            result = adapter.extract(
                dataset, batch_size=config.batch_size, pool=pool, progress=progress, workers=config.workers
            )
        result.meta["load_and_extract_s"] = round(time.perf_counter() - start, 3)
        result.meta.update(extra_meta or {})
        path = store.save(
            dataset, spec.name, pool, result.layers, result.layer_names, result.per_sample, result.meta
        )
        if shards is not None:
            shards.remove()
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


def shard_key(spec: ModelSpec, pool: str, dataset, adapter, config: ExtractConfig) -> dict:
    """What must not change for a shard of an earlier run to be reused: the model, the pooling, the data (its
    fingerprint and N) and everything that may change the floats (dtype, device, batch size, shard size, memory
    format); the number of image workers does not enter (features do not depend on it)."""
    return {
        "model": spec.name,
        "source": spec.source,
        "revision": spec.revision,
        "adapter": spec.adapter,
        "pool": pool,
        "dataset": dataset.fingerprint(),
        "n": len(dataset),
        "dtype": dtype_name(adapter.dtype),
        "device": str(adapter.device),
        "batch_size": config.batch_size,
        "shard_size": config.shard_size,
        "channels_last": bool(getattr(adapter, "channels_last", False)),
    }


def extract_sharded(adapter, dataset, pool: str, config: ExtractConfig, shards: ShardFolder, progress=None):
    """Run ``adapter`` over ``dataset`` in shards of ``config.shard_size`` rows through ``shards`` (reusing the
    complete shards of an earlier run with the same key); returns (FeatureResult of all rows, rows reused).
    See :mod:`prh.features.shards`."""

    def one(start: int, stop: int):
        return adapter.extract(
            RowRange(dataset, start, stop),
            batch_size=config.batch_size,
            pool=pool,
            progress=progress,
            workers=config.workers,
        )

    return run_shards(
        shards, len(dataset), config.shard_size, one, skip=lambda rows: call_progress(progress, rows)
    )


@contextlib.contextmanager
def library_bars_off():
    """Switch off the progress bars that libraries draw while loading weights -- transformers' "Loading weights",
    huggingface_hub's downloads and the GGUF reader's de-quantisation -- and restore them afterwards."""
    undo: list[Callable[[], object]] = []
    try:
        if importlib.util.find_spec("transformers") is not None:
            from transformers.utils import logging as hf_logging

            if hf_logging.is_progress_bar_enabled():
                hf_logging.disable_progress_bar()
                undo.append(hf_logging.enable_progress_bar)
            gguf = sys.modules.get("transformers.modeling_gguf_pytorch_utils")
            if gguf is None and importlib.util.find_spec("gguf") is not None:
                import transformers.modeling_gguf_pytorch_utils as gguf
            if gguf is not None and hasattr(gguf, "tqdm"):  # it calls tqdm(...) without a switch of its own
                original = gguf.tqdm
                gguf.tqdm = functools.partial(original, disable=True)
                undo.append(lambda: setattr(gguf, "tqdm", original))
        if importlib.util.find_spec("huggingface_hub") is not None:
            from huggingface_hub import utils as hub_utils

            if not hub_utils.are_progress_bars_disabled():
                hub_utils.disable_progress_bars()
                undo.append(hub_utils.enable_progress_bars)
        yield
    finally:
        for step in reversed(undo):
            step()


def _library_bars_follow_progress(func: Callable) -> Callable:
    """``progress=False`` also silences the libraries' own loading bars (:func:`library_bars_off`)."""

    @functools.wraps(func)
    def wrapper(*args: Any, progress: bool = True, **kwargs: Any) -> Any:
        with contextlib.nullcontext() if progress else library_bars_off():
            return func(*args, progress=progress, **kwargs)

    return wrapper


@_library_bars_follow_progress
def extract(
    models: list[ModelSpec] | str,
    dataset,
    store,
    config: ExtractConfig | Mapping[str, Any] | None = None,
    *,
    progress: bool = True,
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
    config : ExtractConfig, optional
        Pooling (checked for all models before any work starts), device, dtype, batch size, ``force``
        (recompute stored features), ``trust_remote_code``, ``device_map``, ``stop_on_error``, ``workers``
        (background image workers), ``shard_size`` (rows per resumable shard); default ``ExtractConfig()`` (a
        mapping of its fields is accepted too).
    progress : bool, default True
        Show a tqdm progress bar per model; False also silences the libraries' weight-loading bars.
    log : callable, optional
        Receives one line per event (skips, failures).

    Returns
    -------
    list of dict
        One summary per model: ``model``, ``status`` ("extracted" | "cached" | "failed"), ``pool``, ``time_s``,
        ``samples_per_s``, ``layers``, ``dim``, ``bpb``, ``path``, ``error``.
    """
    config = ExtractConfig.coerce(config)
    specs = (
        resolve_models(models) if isinstance(models, str | list) and not are_specs(models) else list(models)
    )
    pools = check_pools(specs, config.pool)  # everything is validated before anything is loaded
    refuse_ungranted(specs, config.trust_remote_code)  # a file's request for code needs the caller's grant
    say = log or (lambda _msg: None)
    summaries: list[dict] = []
    n = len(dataset)
    for spec in specs:
        p = pools[spec.name]
        row = summary_row(spec, p)
        summaries.append(row)
        if not config.force and store.has(dataset, spec.name, p):
            row["status"] = "cached"
            row["path"] = str(store.path(dataset, spec.name, p))
            try:
                meta = store.meta(dataset, spec.name, p) or {}  # the sidecar: no tensor is read
                row.update(
                    layers=meta.get("n_layers"),
                    dim=_dims(meta["dims"]) if meta.get("dims") else None,
                    bpb=meta.get("bits_per_byte"),
                    samples_per_s=meta.get("samples_per_s"),
                )
            except Exception:  # noqa: BLE001 - the summary is cosmetic
                pass
            say(f"{spec.name}: features already stored ({row['path']}); skipping (use --force to recompute)")
            # shards left by a run killed between writing the entry and removing them
            remove_shards(shard_folder(store.path(dataset, spec.name, p)))
            continue
        bar = None
        try:
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n, desc=spec.name, unit="sample", leave=False, dynamic_ncols=True)
            row.update(extract_and_save(spec, dataset, store, config, progress=bar))
            if row.get("resumed_rows"):
                say(
                    f"{spec.name}: resumed: {row['resumed_rows']} of {n} rows came from an earlier run's shards"
                )
        except (PrhError, Exception) as err:  # noqa: BLE001 - one model failing must not stop the others
            row.update(
                status="failed",
                error=str(err) if isinstance(err, PrhError) else f"{type(err).__name__}: {err}",
            )
            say(f"{spec.name}: FAILED: {row['error']}")
            if config.stop_on_error:
                break
        finally:
            if bar is not None:
                bar.close()
    return summaries


def check_pools(specs: list[ModelSpec], pool: str | None) -> dict[str, str]:
    """``{model name: pooling}`` for every model (``pool`` or each model's default); all unsupported poolings are
    reported at once."""
    pools: dict[str, str] = {}
    bad = []
    for spec in specs:
        try:
            pools[spec.name] = check_pool(spec, pool)
        except InputError as err:
            bad.append(str(err))
    if bad:
        raise InputError(" ".join(bad) + " Leave --pool out to use each model's default.")
    return pools


def are_specs(models: object) -> bool:
    """True when ``models`` is a list of :class:`~prh.models.ModelSpec` (resolved already), not names to resolve."""
    return isinstance(models, list) and all(isinstance(m, ModelSpec) for m in models)
