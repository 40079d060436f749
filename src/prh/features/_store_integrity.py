"""The feature store's integrity checks: sha256 digests of tensors (hashed in threads), the file-against-sidecar
header check, NaN/Inf in stored layers, and the per-process record of files already verified. Private:
:mod:`prh.features.store` is the public face."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from prh.errors import MissingFeaturesError

#: Threads that hash tensors (sha256 releases the GIL): hashing overlaps reading and uses spare cores.
HASH_THREADS = max(1, min(4, os.cpu_count() or 1))
#: Files verified in this process: (path, inode, mtime_ns, size) -> the sidecar digests they matched.
_VERIFIED: dict[tuple[str, int, int, int], dict[str, str]] = {}
#: Files whose sidecar has no digests, already warned about in this process.
_WARNED_UNVERIFIED: set[str] = set()


def check_header(fh: Any, expected: dict[str, tuple], names: list[str], corrupt: Any) -> None:
    """The file's tensor names and shapes (read from its header) against the sidecar's: ``expected`` maps each
    tensor name to its shape (None for a width the sidecar does not give)."""
    keys = set(fh.keys())
    if keys != set(expected):
        missing, extra = sorted(set(expected) - keys), sorted(keys - set(expected))
        shown = f"{names[:4]}{'...' if len(names) > 4 else ''}"
        raise corrupt(
            f"its tensors do not match the sidecar ({len(names)} layers {shown}): missing {missing}, "
            f"not in the sidecar {extra}"
        )
    for name, want in expected.items():
        shape = tuple(fh.get_slice(name).get_shape())
        if len(shape) != len(want) or any(w is not None and s != w for s, w in zip(shape, want)):
            label = (
                f"layer {names[int(name[6:])]!r}"
                if name.startswith("layer.")
                else (f"repeat {name[7:]}" if name.startswith("repeat.") else f"per-sample {name[7:]!r}")
            )
            wanted = (
                "("
                + ", ".join("D" if w is None else str(w) for w in want)
                + ("," if len(want) == 1 else "")
                + ")"
            )
            raise corrupt(
                f"{label} has shape {shape} in the file but {wanted} in the sidecar (N rows, D columns)"
            )


def tensor_digest(t: torch.Tensor) -> str:
    """sha256 (hex) of a tensor's bytes as stored (C order, native byte order), whatever its dtype."""
    t = t.detach().cpu().contiguous()
    if t.numel() == 0:
        return hashlib.sha256(b"").hexdigest()
    return hashlib.sha256(memoryview(t.reshape(-1).view(torch.uint8).numpy())).hexdigest()


def check_finite_layer(t: torch.Tensor, model: str, layer: str, path: Path, fix: str) -> None:
    """MissingFeaturesError naming the model, layer and file when a stored layer holds NaN/Inf."""
    if t.numel() == 0 or bool(torch.isfinite(t.sum())):
        return
    bad = ~torch.isfinite(t)
    if bool(bad.any()):
        first = tuple(int(i) for i in torch.nonzero(bad)[0].tolist())
        raise MissingFeaturesError(
            f"layer {layer!r} of model {model!r} in {path} holds {int(bad.sum())} NaN/Inf value(s) (first at row "
            f"{first[0]}, column {first[1] if len(first) > 1 else 0}); the file is corrupt or was not written by "
            f"prh -- re-extract with `{fix}`."
        )
