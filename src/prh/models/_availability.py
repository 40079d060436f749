"""Is a model usable right now without internet, and if not, why? (No network access is attempted.)"""

from __future__ import annotations

import os
from pathlib import Path

from prh.errors import PrhError
from prh.models.adapters import families, requirements
from prh.models.registry import extras_missing
from prh.models.spec import ModelSpec


def _hints(missing: list[str]) -> list[str]:
    """How to install each missing module, from the requirements the adapter modules declare."""
    by_module = {m: req.install() for req in requirements().values() for m in req.modules}
    return sorted({by_module.get(m, f"pip install {m}") for m in missing})


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


def hub_check(repo_id: str, revision: str | None = None) -> tuple[bool, str]:
    """Whether ``repo_id`` is usable from the local Hugging Face cache, and if not why (no network access)."""
    if hub_cached(repo_id, revision):
        return True, "in the local Hugging Face cache"
    if hub_offline():
        return False, "needs the hub (HF_HUB_OFFLINE is set and it is not in the local cache)"
    return False, "needs the hub (not in the local Hugging Face cache; downloads on first use)"


def availability(spec: ModelSpec) -> tuple[bool, str]:
    """Whether ``spec`` can be loaded here and now without a network, and why (not).

    Returns
    -------
    (bool, str)
        ``(True, "zoo package installed")`` etc., or ``(False, reason with the fix)``: a missing zoo package
        (``run `prh zoo install NAME```), a hub model not in the local cache or with HF offline mode on
        ("needs the hub"), a missing optional extra (which extra), or what the adapter's own check says (its
        ``check`` in :func:`prh.models.adapters.register_adapter`, e.g. a missing ONNX file).
    """
    missing = extras_missing(spec)
    if missing:
        hints = _hints(missing)
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
    info = families().get(spec.adapter)
    verdict = info.check(spec) if info is not None and info.check is not None else None
    return verdict if verdict is not None else hub_check(spec.source, spec.revision)
