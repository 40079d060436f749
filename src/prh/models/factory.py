"""One factory for every adapter family: :func:`build_adapter`, driven by the families' declarations."""

from __future__ import annotations

from prh.models.adapters import adapter_info, load_kwargs
from prh.models.base import Adapter
from prh.models.spec import ModelSpec
from prh.models.trust import check_remote_code


def adapter_class(adapter: str) -> type[Adapter]:
    """The adapter class registered under ``adapter`` (see :func:`prh.models.adapters.register_adapter`)."""
    return adapter_info(adapter).cls


def build_adapter(
    spec: ModelSpec,
    device: str = "auto",
    dtype: str = "float32",
    device_map: str | None = None,
    trust_remote_code: bool = False,
) -> Adapter:
    """Load the model of ``spec`` and return its adapter.

    Parameters
    ----------
    spec : ModelSpec
        A registry entry (:func:`prh.models.get_model`).
    device : str
        ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda:1"``, ...
    dtype : str
        ``"float32"`` (default), ``"bfloat16"``, ``"float16"``, ``"auto"``.
    device_map : str or None
        ``"auto"`` spreads a Hugging Face model over all GPUs/CPU (needs accelerate).
    trust_remote_code : bool
        The grant for a hub repository's own code (``--trust-remote-code``); off unless the person running prh
        turns it on. ``spec.trust_remote_code`` (a models file's request) without it is refused; with it, one
        :class:`~prh.errors.PrhWarning` names the files transformers will import.

    Raises
    ------
    OfflineError
        The model must come from the hub and the hub cannot be reached.
    ModelLoadError
        Missing zoo package or optional extra, remote code not allowed, broken weights.
    InputError
        ``spec.adapter`` names no registered adapter family, or ``spec`` asks for repository code that
        ``trust_remote_code`` does not grant.
    """
    info = adapter_info(spec.adapter)
    if "trust_remote_code" in info.load_options or spec.trust_remote_code:
        check_remote_code(spec, bool(trust_remote_code))
    kwargs = load_kwargs(info, device_map=device_map, trust_remote_code=trust_remote_code)
    return info.cls(spec, device=device, dtype=dtype, **kwargs)
