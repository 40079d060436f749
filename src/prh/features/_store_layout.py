"""The feature store's layout: where an entry lives, its file-name-safe names, the sidecar's reserved keys and how
metadata becomes JSON. Private: :mod:`prh.features.store` is the public face."""

from __future__ import annotations

import hashlib
import math
import os
import re
from typing import Any

import torch

DEFAULT_ROOT = "prh-cache/features"
FORMAT = "prh-features"
FORMAT_VERSION = 1
#: Sidecar keys the store sets itself (a caller's values for them are overwritten).
RESERVED_KEYS = (
    "format",
    "format_version",
    "model",
    "pool",
    "layer_names",
    "layer_dims",
    "n",
    "storage_dtype",
    "per_sample",
    "repeats",
    "dataset",
    "prh_version",
    "created",
    "write_id",
    "files",
    "sha256",
)


def slug(name: str) -> str:
    """A file-name-safe, collision-free form of a model or dataset name.

    ``/`` becomes ``--``; characters outside ``[A-Za-z0-9._@+=-]`` become ``_`` and then an 8-hex hash of the
    original name is appended, so that two different names never share a slug.
    """
    base = name.replace("/", "--")
    clean = re.sub(r"[^A-Za-z0-9._@+=-]", "_", base).strip("._") or "x"
    if clean != base or len(clean) > 96:
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:8]
        clean = f"{clean[:80]}-{digest}"
    return clean


def jsonable(value: Any) -> Any:
    """Best-effort conversion of metadata values to JSON (numpy/torch scalars, paths, tensors, NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return (
            jsonable(value.detach().cpu().tolist())
            if value.numel() <= 4096
            else f"<tensor {tuple(value.shape)}>"
        )
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return jsonable(value.tolist())
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return jsonable(asdict(value))
    return str(value)


def cli_dataset(name: str) -> str:
    """The ``--dataset`` spelling of a stored dataset name: a folder's path, the paper's set by its revision."""
    from prh.data.hf import PAPER_REPO, PAPER_REVISION

    if name.startswith("folder:"):
        return name[len("folder:") :]
    if name == f"{PAPER_REPO}@{PAPER_REVISION}":
        return PAPER_REVISION
    return name


def own_storage(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor that owns its storage (safetensors refuses views that share memory)."""
    t = t.detach().to("cpu")
    if (
        not t.is_contiguous()
        or t.untyped_storage().nbytes() != t.numel() * t.element_size()
        or t.storage_offset()
    ):
        t = t.contiguous().clone()
    return t
