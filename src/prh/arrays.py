"""Loading feature arrays from disk without unpickling anything (.npy, .npz, .safetensors)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prh.errors import InputError

#: First bytes of every .npy file (format version follows) and of a zip archive (.npz).
_NPY_MAGIC = b"\x93NUMPY"
_ZIP_MAGIC = b"PK"
#: Pickle protocols 2-5 start with b"\x80" and the protocol number.
_PICKLE_MAGIC = b"\x80"

_SAVE_HINT = "save a plain numeric array, e.g. numpy.save(path, numpy.asarray(x, dtype=numpy.float32))"


def load_array(path: str | Path, key: str | None = None, key_flag: str = "key") -> np.ndarray:
    """Load a numeric array from ``.npy``, ``.npz`` (one array, or the one named ``key``) or ``.safetensors``.

    A ``.safetensors`` file from the prh feature store (``layer.000``, ``layer.001``, ... of equal width) is
    stacked to (N, L, D). Pickled object arrays are refused: prh never unpickles files. Unreadable, truncated or
    garbage files raise :class:`InputError` naming the file and what is wrong with it; ``key_flag`` is how the
    caller lets users choose an array (e.g. ``"--key-a"`` on the command line), used in messages.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p} does not exist or is not a file.")
    suffix = p.suffix.lower()
    if suffix not in (".npy", ".npz", ".safetensors"):
        raise InputError(f"{p}: unsupported file type {suffix!r}; use .npy, .npz or .safetensors.")
    try:
        with p.open("rb") as fh:
            head = fh.read(8)
    except OSError as err:
        raise InputError(
            f"cannot read {p}: {err.strerror or err}; check the path and its permissions."
        ) from err
    if suffix == ".safetensors":
        return _load_safetensors(p, key, key_flag)
    expected = _NPY_MAGIC if suffix == ".npy" else _ZIP_MAGIC
    if not head.startswith(expected):
        if head.startswith(_PICKLE_MAGIC):
            raise InputError(
                f"{p} is a pickle, not a {suffix} file; prh never unpickles files (it can run arbitrary code): "
                f"{_SAVE_HINT}."
            )
        raise InputError(
            f"{p} is not a valid {suffix} file (it does not start with the {suffix} header; truncated, corrupt or "
            f"another format): {_SAVE_HINT}."
        )
    try:
        if suffix == ".npy":
            return np.load(p, allow_pickle=False)
        with np.load(p, allow_pickle=False) as archive:
            keys = list(archive.keys())
            if key is None and len(keys) == 1:
                key = keys[0]
            if key not in keys:
                raise InputError(f"{p} holds arrays {keys}; choose one with {key_flag} NAME.")
            return archive[key]
    except InputError:
        raise
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise InputError(
                f"{p} holds an array of pickled Python objects; prh never unpickles files (it can run arbitrary "
                f"code): {_SAVE_HINT}."
            ) from err
        raise InputError(f"{p} is not a readable {suffix} file ({err}): {_SAVE_HINT}.") from err
    except (OSError, EOFError, KeyError) as err:  # truncated data, broken zip members
        raise InputError(f"{p} is truncated or corrupt ({type(err).__name__}: {err}): {_SAVE_HINT}.") from err
    except Exception as err:  # zipfile.BadZipFile and friends: one clear line, never a traceback
        raise InputError(f"{p} is corrupt ({type(err).__name__}: {err}): {_SAVE_HINT}.") from err


def _load_safetensors(p: Path, key: str | None, key_flag: str) -> np.ndarray:
    from safetensors.numpy import load_file

    try:
        tensors = load_file(str(p))
    except Exception as err:  # SafetensorError, header errors, truncated payloads
        raise InputError(
            f"{p} is not a readable .safetensors file ({type(err).__name__}: {err}); it is truncated, corrupt or "
            "another format. Re-create it with safetensors.numpy.save_file."
        ) from err
    if key is not None:
        if key not in tensors:
            raise InputError(f"{p} has no tensor {key!r}; it holds {sorted(tensors)}.")
        return tensors[key]
    layer_keys = sorted(k for k in tensors if k.startswith("layer."))
    if layer_keys:
        widths = {tensors[k].shape[-1] for k in layer_keys}
        if len(widths) != 1:
            raise InputError(
                f"{p} has layers of different widths {sorted(widths)}; pick one with {key_flag} layer.NNN."
            )
        return np.stack([tensors[k] for k in layer_keys], axis=1)
    if len(tensors) == 1:
        return next(iter(tensors.values()))
    raise InputError(f"{p} holds tensors {sorted(tensors)}; choose one with {key_flag} NAME.")
