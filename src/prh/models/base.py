"""What every adapter shares: device/dtype resolution, error translation at load time, out-of-memory handling,
progress reporting and the in-order result buffer."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from prh.errors import ExtractionError, InputError, ModelLoadError, OfflineError
from prh.models.spec import ADAPTER_POOLS, FeatureResult, ModelSpec

DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}

Progress = Callable[[int], object] | None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> ``cuda`` when available, else ``cpu``; anything else is passed to :class:`torch.device`."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(
            f"device={device!r} is not a torch device; use 'auto', 'cpu', 'cuda' or 'cuda:N'."
        ) from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError(f"device={device!r} was asked for but CUDA is not available here; use --device cpu.")
    return dev


def resolve_dtype(
    dtype: str | torch.dtype | None = "float32", device: torch.device | None = None
) -> torch.dtype:
    """Map a dtype name to a torch dtype; ``"auto"`` = bfloat16 on a CUDA device that supports it, else float32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        if device is not None and device.type == "cuda" and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    key = str(dtype).lower().replace("torch.", "")
    if key not in DTYPES:
        raise InputError(f"dtype={dtype!r} is not supported; use one of float32, float16, bfloat16, auto.")
    return DTYPES[key]


def dtype_name(dtype: torch.dtype) -> str:
    """``torch.float32`` -> ``"float32"``."""
    return str(dtype).replace("torch.", "")


def check_pool(spec: ModelSpec, pool: str | None) -> str:
    """Return the pooling to use for ``spec`` (its default when ``pool`` is None); raise if unsupported."""
    pool = pool or spec.pool
    allowed = ADAPTER_POOLS.get(spec.adapter, ("mean",))
    if pool not in allowed:
        raise InputError(
            f"pool={pool!r} is not supported by model {spec.name!r} (adapter {spec.adapter}); "
            f"it supports {', '.join(allowed)}."
        )
    return pool


def is_local_path(source: str) -> bool:
    """True when ``source`` names an existing file or folder (not a hub id)."""
    return bool(source) and Path(os.path.expanduser(source)).exists()


def translate_load_error(err: BaseException, spec: ModelSpec, what: str = "model") -> Exception:
    """Turn an exception raised while loading ``spec`` into the prh error a user can act on."""
    text = str(err)
    low = text.lower()
    if "trust_remote_code" in low or "custom code" in low:
        return ModelLoadError(
            f"model {spec.name!r} ({spec.source}) needs its repository's own Python code to load "
            f"(trust_remote_code); prh does not run remote code unless you allow it: rerun with "
            f"--trust-remote-code (or set trust_remote_code = true in its TOML entry) if you trust that code."
        )
    local = is_local_path(spec.source) or spec.zoo_name is not None
    offline_markers = (
        "couldn't connect",
        "could not connect",
        "offline mode",
        "offline",
        "connection",
        "we couldn't",
        "cannot find the requested files in the local cache",
        "local_files_only",
        "not the path to a directory containing",
        "max retries",
        "name or service not known",
        "temporary failure in name resolution",
    )
    hub_error_types = ()
    try:  # huggingface_hub error classes, when available
        from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

        hub_error_types = (LocalEntryNotFoundError, OfflineModeIsEnabled)
    except ImportError:  # pragma: no cover - old huggingface_hub
        pass
    if not local and (
        isinstance(err, hub_error_types + (ConnectionError, TimeoutError))
        or (isinstance(err, OSError) and any(m in low for m in offline_markers))
    ):
        return OfflineError(
            f"could not load {what} {spec.name!r} from the Hugging Face hub ({spec.source}): the hub is "
            f"unreachable or offline mode is on and it is not in the local cache. Use the offline zoo instead "
            f"(`prh extract --models offline ...`, see `prh models --set offline`), or run once with internet "
            f"to cache it. ({type(err).__name__}: {text.splitlines()[0] if text else ''})"
        )
    if isinstance(err, ModelLoadError | OfflineError | InputError):
        return err  # already clear
    return ModelLoadError(
        f"could not load {what} {spec.name!r} from {spec.source!r}: {type(err).__name__}: "
        f"{text.splitlines()[0] if text else ''}"
    )


@contextlib.contextmanager
def loading(spec: ModelSpec, what: str = "model") -> Iterator[None]:
    """Context manager translating load-time exceptions of ``spec`` into prh errors."""
    try:
        yield
    except (ModelLoadError, OfflineError, InputError):
        raise
    except ImportError as err:
        raise ModelLoadError(
            f"model {spec.name!r} needs a package that is not installed: {err}. "
            f"Install the matching extra (e.g. `pip install prh[{spec.extra or 'zoo'}]`)."
        ) from err
    except Exception as err:  # noqa: BLE001 - translated, chained
        raise translate_load_error(err, spec, what) from err


@contextlib.contextmanager
def forward_guard(spec: ModelSpec, batch_size: int) -> Iterator[None]:
    """Context manager turning CUDA out-of-memory into an :class:`ExtractionError` suggesting a smaller batch."""
    try:
        yield
    except torch.OutOfMemoryError as err:
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        smaller = max(1, batch_size // 2)
        raise ExtractionError(
            f"out of GPU memory while extracting {spec.name!r} with batch size {batch_size}; "
            f"rerun with a smaller --batch-size (e.g. --batch-size {smaller}), a smaller --dtype "
            f"(bfloat16) or --device-map auto. Features already stored for other models are kept."
        ) from err


def call_progress(progress: Progress, n: int) -> None:
    """Report ``n`` finished samples to a callable or a tqdm-like object with ``update``."""
    if progress is None:
        return
    update = getattr(progress, "update", None)
    if callable(update):
        update(n)
    else:
        progress(n)


class LayerBuffer:
    """Preallocated (N, D_l) float32 CPU tensors filled batch by batch at the batch's dataset indices.

    Batches may come in any order (length-sorted); rows end up in dataset order.
    """

    def __init__(self, n: int) -> None:
        self.n = n
        self.layers: list[torch.Tensor] | None = None
        self.filled = torch.zeros(n, dtype=torch.bool)

    def put(self, index: torch.Tensor | list[int], pooled: list[torch.Tensor]) -> None:
        """Store pooled layer outputs (each (B, D_l)) for dataset rows ``index`` (length B)."""
        idx = torch.as_tensor(index, dtype=torch.long)
        if self.layers is None:
            self.layers = [torch.zeros(self.n, p.shape[-1], dtype=torch.float32) for p in pooled]
        if len(pooled) != len(self.layers):
            raise ExtractionError(
                f"the model returned {len(pooled)} layers for one batch, {len(self.layers)} before"
            )
        for buf, p in zip(self.layers, pooled, strict=True):
            buf[idx] = p.detach().to("cpu", torch.float32)
        self.filled[idx] = True

    def result(self) -> list[torch.Tensor]:
        """The filled tensors; raises if a row was never written or a value is not finite."""
        if self.layers is None or not bool(self.filled.all()):
            missing = int((~self.filled).sum())
            raise ExtractionError(f"{missing} of {self.n} samples were not extracted (internal error).")
        for i, t in enumerate(self.layers):
            if not bool(torch.isfinite(t).all()):
                bad = torch.nonzero(~torch.isfinite(t).all(dim=1)).flatten()[:5].tolist()
                raise ExtractionError(
                    f"layer {i} has NaN/Inf features (rows {bad}); try --dtype float32 or another pooling."
                )
        return self.layers


def batches(order: list[int], batch_size: int) -> Iterator[list[int]]:
    """Consecutive chunks of ``order`` of at most ``batch_size`` items."""
    if batch_size < 1:
        raise InputError(f"batch_size must be a positive integer, got {batch_size}.")
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]


def count_params(module: torch.nn.Module) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in module.parameters()))


class Adapter:
    """Base class: runs one model over a :class:`~prh.data.PairedDataset` and returns per-layer pooled features.

    Subclasses implement :meth:`_extract` and set ``self.spec``, ``self.device``, ``self.dtype``,
    ``self.n_params``.
    """

    spec: ModelSpec
    device: torch.device
    dtype: torch.dtype
    n_params: int | None = None

    def extract(
        self, dataset, batch_size: int = 16, pool: str | None = None, progress: Progress = None
    ) -> FeatureResult:
        """Extract per-layer pooled features for every item of ``dataset``.

        Parameters
        ----------
        dataset : PairedDataset
            Language models read ``dataset.texts(0)``, vision models ``dataset.image(i)``.
        batch_size : int
            Samples per forward pass (the features do not depend on it).
        pool : str or None
            Pooling (None: the spec's default); see :data:`prh.models.spec.ADAPTER_POOLS`.
        progress : callable or tqdm-like, optional
            Called with the number of samples finished after each batch.

        Returns
        -------
        FeatureResult
            L layers of shape (N, D_l), float32, CPU, in dataset order.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}.")
        pool = check_pool(self.spec, pool)
        if len(dataset) == 0:
            raise InputError(f"dataset {getattr(dataset, 'name', '?')!r} is empty; nothing to extract.")
        start = time.perf_counter()
        result = self._extract(dataset, batch_size, pool, progress)
        wall = time.perf_counter() - start
        n = len(dataset)
        meta = {
            "model": self.spec.name,
            "source": self.spec.source,
            "revision": self.spec.revision,
            "adapter": self.spec.adapter,
            "modality": self.spec.modality,
            "family": self.spec.family,
            "pool": pool,
            "dtype": dtype_name(self.dtype),
            "device": str(self.device),
            "params": self.n_params if self.n_params is not None else self.spec.params,
            "competence": dict(self.spec.competence),
            "batch_size": batch_size,
            "wall_time_s": round(wall, 4),
            "samples_per_s": round(n / wall, 3) if wall > 0 else None,
            "n_layers": len(result.layers),
            "dims": [int(t.shape[1]) for t in result.layers],
        }
        if "bpb" in result.per_sample:
            meta["bits_per_byte"] = float(result.per_sample["bpb"].mean())
        meta.update(result.meta)
        result.meta = meta
        return result

    def _extract(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        raise NotImplementedError
