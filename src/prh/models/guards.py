"""Exceptions raised while loading or running a model, translated into the prh errors a user can act on:
hub/offline/remote-code failures at load time (:func:`loading`) and out-of-memory at forward time
(:func:`forward_guard`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import torch

from prh._optional import install_hint
from prh.errors import ExtractionError, InputError, ModelLoadError, OfflineError
from prh.models.spec import ModelSpec


def is_local_path(source: str) -> bool:
    """True when ``source`` names an existing file or folder (not a hub id)."""
    return bool(source) and Path(source).expanduser().exists()


def translate_load_error(err: BaseException, spec: ModelSpec, what: str = "model") -> Exception:
    """Turn an exception raised while loading ``spec`` into the prh error a user can act on."""
    text = str(err)
    low = text.lower()
    if "trust_remote_code" in low or "custom code" in low:
        return ModelLoadError(
            f"model {spec.name!r} ({spec.source}) needs its repository's own Python code to load "
            f"(trust_remote_code); prh does not run remote code unless you allow it: rerun with "
            f"--trust-remote-code (Python: ExtractConfig(trust_remote_code=True)) if you trust that code."
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
    """Context manager translating load-time exceptions of ``spec`` into prh errors.

    A model that comes from the hub is loaded from the local cache only when offline mode is on or the hub does not
    answer within 2 seconds (:func:`prh.data.hf.hub_offline`): no minute of retries before the offline error.
    """
    from prh.data.hf import hub_offline, hub_offline_mode

    from_hub = not is_local_path(spec.source) and spec.zoo_name is None
    try:
        with hub_offline_mode() if from_hub and hub_offline() else contextlib.nullcontext():
            yield
    except (ModelLoadError, OfflineError, InputError):
        raise
    except ImportError as err:
        raise ModelLoadError(
            f"model {spec.name!r} needs a package that is not installed: {err}. "
            f"Install the matching extra (e.g. `{install_hint(spec.extra or 'zoo')}`)."
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
