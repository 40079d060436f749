"""Is a model usable right now without internet, and if not, why? (No network access is attempted.)"""

from __future__ import annotations

import os
from pathlib import Path

from prh.errors import PrhError
from prh.models.registry import extras_missing
from prh.models.spec import ModelSpec

_EXTRA_HINT = {
    "onnx": "pip install 'prh[onnx]'",
    "onnxruntime": "pip install 'prh[onnx]'",
    "timm": "pip install 'prh[timm]'",
    "torchvision": "pip install 'prh[timm]'",
    "gguf": "pip install 'prh[zoo]' (gguf, accelerate)",
    "accelerate": "pip install 'prh[zoo]' (gguf, accelerate)",
    "efficientnet_lite_pytorch": "prh zoo install (efficientnet-lite-pytorch)",
}


def hub_offline() -> bool:
    """True when Hugging Face offline mode is switched on by the environment."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
        for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_cached(repo_id: str, revision: str | None = None, filename: str = "config.json") -> bool:
    """True when ``filename`` of ``repo_id`` is in the local Hugging Face cache."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover
        return False
    try:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
    except Exception:  # noqa: BLE001 - invalid repo ids etc.
        return False
    return isinstance(found, str)


def availability(spec: ModelSpec) -> tuple[bool, str]:
    """Whether ``spec`` can be loaded here and now without a network, and why (not).

    Returns
    -------
    (bool, str)
        ``(True, "zoo package installed")`` etc., or ``(False, reason with the fix)``: a missing zoo package
        (``run `prh zoo install NAME```), a hub model not in the local cache or with HF offline mode on
        ("needs the hub"), a missing optional extra (which extra).
    """
    missing = extras_missing(spec)
    if missing:
        hints = sorted({_EXTRA_HINT.get(m, f"pip install {m}") for m in missing})
        return False, f"optional extra missing ({', '.join(missing)}): {'; '.join(hints)}"
    if spec.zoo_name is not None:
        try:
            from prh.zoo import locate
        except ImportError:
            return False, "prh.zoo is not available in this installation"
        try:
            path = locate(spec.zoo_name)
        except PrhError:
            return False, f"zoo package missing: run `prh zoo install {spec.zoo_name}`"
        except Exception as err:  # noqa: BLE001 - report, never crash a listing
            return (
                False,
                f"zoo lookup failed ({type(err).__name__}: {err}); run `prh zoo install {spec.zoo_name}`",
            )
        return True, f"installed (offline zoo: {Path(path).name})"
    src = Path(spec.source).expanduser()
    if src.exists():
        return True, "local path"
    if spec.adapter == "onnx":
        return False, f"ONNX file {spec.source!r} does not exist"
    if (
        spec.adapter == "torch-module"
    ):  # built by code, from local weights: the source is a label, not a hub id
        return _torch_module_availability(spec)
    repo = spec.source
    if spec.adapter == "timm":
        repo = f"timm/{spec.source}"
    if hub_cached(repo, spec.revision):
        return True, "in the local Hugging Face cache"
    if hub_offline():
        return False, "needs the hub (HF_HUB_OFFLINE is set and it is not in the local cache)"
    return False, "needs the hub (not in the local Hugging Face cache; downloads on first use)"


def _torch_module_availability(spec: ModelSpec) -> tuple[bool, str]:
    """A ``torch-module`` entry needs its builder's module importable and its ``options.weights`` file present
    (checked without importing the builder); it never needs the hub."""
    import importlib.util

    builder = spec.options.get("builder")
    if builder and ":" in str(builder):
        module = str(builder).partition(":")[0]
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            return False, f"builder module {module!r} is not importable (install it or fix options.builder)"
    weights = spec.options.get("weights")
    if weights:
        path = Path(str(weights)).expanduser()
        if not path.exists():
            return False, f"weights file {weights} does not exist (options.weights)"
        return True, f"local weights ({path.name})"
    return True, "built locally (no weights file)"
