"""Loading feature arrays from disk without unpickling anything (.npy, .npz, .safetensors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prh.errors import InputError


def load_array(path: str | Path, key: str | None = None) -> np.ndarray:
    """Load a numeric array from ``.npy``, ``.npz`` (one array, or the one named ``key``) or ``.safetensors``.

    A ``.safetensors`` file from the prh feature store (``layer.000``, ``layer.001``, ... of equal width) is
    stacked to (N, L, D). Pickled object arrays are refused: prh never unpickles files.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file.")
    suffix = p.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        if suffix == ".npz":
            with np.load(p, allow_pickle=False) as archive:
                keys = list(archive.keys())
                if key is None and len(keys) == 1:
                    key = keys[0]
                if key not in keys:
                    raise InputError(f"{p} holds arrays {keys}; choose one with --key NAME.")
                return archive[key]
        if suffix == ".safetensors":
            return _load_safetensors(p, key)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise InputError(
                f"{p} contains pickled Python objects; prh never unpickles files (it can run arbitrary code). "
                f"Save a plain numeric array, e.g. numpy.save(path, numpy.asarray(x, dtype=numpy.float32))."
            ) from err
        raise InputError(f"could not read {p}: {err}") from err
    raise InputError(f"{p}: unsupported file type {suffix!r}; use .npy, .npz or .safetensors.")


def _load_safetensors(p: Path, key: str | None) -> np.ndarray:
    from safetensors.numpy import load_file

    tensors = load_file(str(p))
    if key is not None:
        if key not in tensors:
            raise InputError(f"{p} has no tensor {key!r}; it holds {sorted(tensors)}.")
        return tensors[key]
    layer_keys = sorted(k for k in tensors if k.startswith("layer."))
    if layer_keys:
        widths = {tensors[k].shape[-1] for k in layer_keys}
        if len(widths) != 1:
            raise InputError(
                f"{p} has layers of different widths {sorted(widths)}; pick one with --key layer.NNN."
            )
        return np.stack([tensors[k] for k in layer_keys], axis=1)
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise InputError(f"{p} holds tensors {sorted(tensors)}; choose one with --key NAME.")
