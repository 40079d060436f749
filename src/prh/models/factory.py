"""One factory for every adapter family: :func:`build_adapter`."""

from __future__ import annotations

from prh.errors import InputError
from prh.models.base import Adapter
from prh.models.spec import ModelSpec


def adapter_class(adapter: str) -> type[Adapter]:
    """The adapter class for an adapter name (imported lazily)."""
    if adapter == "hf-causal-lm":
        from prh.models.hf_causal_lm import HFCausalLMAdapter as cls
    elif adapter == "hf-text-encoder":
        from prh.models.hf_text_encoder import HFTextEncoderAdapter as cls
    elif adapter == "hf-vision":
        from prh.models.hf_vision import HFVisionAdapter as cls
    elif adapter == "torch-module":
        from prh.models.torch_module import TorchModuleAdapter as cls
    elif adapter == "timm":
        from prh.models.timm_adapter import TimmAdapter as cls
    elif adapter == "onnx":
        from prh.models.onnx_adapter import OnnxAdapter as cls
    else:
        raise InputError(f"unknown adapter {adapter!r}")
    return cls


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
        Allow a hub repository's own code; off unless the user turns it on.

    Raises
    ------
    OfflineError
        The model must come from the hub and the hub cannot be reached.
    ModelLoadError
        Missing zoo package or optional extra, remote code not allowed, broken weights.
    """
    cls = adapter_class(spec.adapter)
    kwargs = {"device": device, "dtype": dtype}
    if spec.adapter.startswith("hf-"):
        kwargs.update(device_map=device_map, trust_remote_code=trust_remote_code)
    return cls(spec, **kwargs)
