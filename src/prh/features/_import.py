"""Import embeddings computed elsewhere (API models, another framework, neural recordings) into the feature store.

:func:`import_features` reads an (N, D) array, an (N, L, D) array or several layers from ``.npy``, ``.npz``,
``.safetensors``, ``.parquet`` / ``.csv`` or HDF5 (``.h5``/``.hdf5``, needs ``h5py``), checks it, matches its rows to
the dataset's items and stores it like extracted features: one safetensors file + JSON sidecar (with the source
files' sha256), so the imported model joins ``prh align``, the report and :class:`prh.Alignment` by its name.

Matching rows to items: when the file has ids (``id_column``: a CSV/parquet column, an ``.npz``/HDF5 array or a
safetensors integer tensor; ``"ids"``/``"id"`` are found without asking) rows are matched to the dataset's item
ids, not by position: duplicates are refused; dataset items the file lacks are refused, or with ``subset`` the
entry keeps the shared items and a per-item mask (``sample.present``), and every alignment that uses the model is
restricted to the items all its models share. Rows whose id is not in the dataset are left out (and counted).
Without ids the file must have exactly the dataset's N rows, taken in dataset order.

Repeated measurements (``repeats``: one (R, N, D) array, or several files of (N, D), one per repeat) are stored as
their mean (the model's one layer) plus the R repeats, from which the alignment computes a noise ceiling
(:func:`prh.stats.noise_ceiling`).

Nothing is unpickled (``np.load(allow_pickle=False)``); a malformed file is one :class:`~prh.errors.InputError`
naming the file and what to fix, and nothing of a failed import is stored.

One file, over the usual ~450 lines, on purpose: the five format readers end in one shape check, one id-matching
step and one store write, and every error names the file, row, id or column it found; splitting the readers from
those checks would split one validation path in two.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from prh._validation import ConfigFields, check_bool, check_int, check_str
from prh.errors import InputError
from prh.models.spec import POOLS, ModelSpec

#: The adapter name of imported models (sidecar ``adapter``, models-file ``adapter = "imported"``).
ADAPTER = "imported"
#: File suffixes -> format name.
FORMATS = {
    ".npy": "npy",
    ".npz": "npz",
    ".safetensors": "safetensors",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".csv": "csv",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
}
#: Names of an id column / key found without ``id_column``.
ID_NAMES = ("ids", "id")
_LABEL = re.compile(r"[a-z][a-z0-9_.-]*")


def _names(value: object, name: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",") if v.strip()]
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(v, str) and v for v in value):
        raise InputError(f"{name}={value!r} must be a non-empty list of names (or a comma-separated string).")
    return tuple(value)


@dataclass(frozen=True)
class ImportConfig(ConfigFields):
    """How to read and describe imported embeddings (frozen; validated when built).

    Parameters
    ----------
    modality : str
        A free label, lower case: ``"vision"``, ``"language"``, ``"brain"``, ``"audio"``, ... Models with different
        labels form the cross-modal pairs of an alignment run.
    family : str
        Model family (for the report), e.g. ``"openai-embeddings"``, ``"fmri"``.
    params : int or None
        Parameter count, when it is known (>= 1).
    citation : str
        Where the embeddings come from (paper, API and date, recording).
    layer_names : tuple of str or None
        One name per layer; default the file's array / column / dataset names.
    id_column : str or None
        Column (CSV/parquet) or array (``.npz``, HDF5 path, safetensors tensor) holding the item ids; default an
        ``ids`` or ``id`` column/array when there is one.
    keys : tuple of str or None
        The arrays to read (``.npz`` keys, safetensors tensor names, HDF5 dataset paths) or the feature columns
        (CSV/parquet: several numeric columns, or one list-valued column), in layer order; default all of them.
    repeats : bool
        The data are R repeated measurements: one (R, N, D) array, or one (N, D) array per file.
    subset : bool
        Keep the dataset items the file has when it lacks some (default: refuse).
    pool : str
        The pooling name the entry is stored under (``"mean"``, the default pooling of ``prh align``).
    """

    modality: str = "vision"
    family: str = ""
    params: int | None = None
    citation: str = ""
    layer_names: tuple[str, ...] | None = None
    id_column: str | None = None
    keys: tuple[str, ...] | None = None
    repeats: bool = False
    subset: bool = False
    pool: str = "mean"

    def __post_init__(self) -> None:
        label = check_str(self.modality, "modality", allow_empty=False).strip().lower()
        if not _LABEL.fullmatch(label):
            raise InputError(
                f"modality={self.modality!r} must be a label such as 'vision', 'language', 'brain' or 'audio' "
                f"(letters, digits, '_', '-', '.')."
            )
        object.__setattr__(self, "modality", label)
        object.__setattr__(self, "family", check_str(self.family, "family"))
        if self.params is not None:
            object.__setattr__(
                self, "params", check_int(self.params, "params", minimum=1, hint="a parameter count")
            )
        object.__setattr__(self, "citation", check_str(self.citation, "citation"))
        object.__setattr__(self, "layer_names", _names(self.layer_names, "layer_names"))
        if self.id_column is not None:
            object.__setattr__(self, "id_column", check_str(self.id_column, "id_column", allow_empty=False))
        object.__setattr__(self, "keys", _names(self.keys, "keys"))
        object.__setattr__(self, "repeats", check_bool(self.repeats, "repeats"))
        object.__setattr__(self, "subset", check_bool(self.subset, "subset"))
        if self.pool not in POOLS:
            raise InputError(f"pool={self.pool!r} must be one of {list(POOLS)}.")


@dataclass
class _Read:
    """One file as read: arrays (each (N, D), or (R, N, D) for repeats), their names, the ids (or None)."""

    path: Path
    fmt: str
    arrays: list[np.ndarray]
    names: list[str]
    ids: list[str] | None
    id_source: str = ""


@dataclass
class ImportReport:
    """What :func:`import_features` did.

    Attributes
    ----------
    name : the model name; path : the stored safetensors file.
    n_dataset : the dataset's N; n_found : its items found in the file(s); matched_by : ``"ids"`` or ``"order"``.
    dropped : rows of the file(s) whose id is not in the dataset; subset : True when only shared items are stored.
    layer_names, dims : the stored layers; repeats : R (0 when not a repeated measurement).
    files : ``[{"path", "format", "sha256", "rows", "ids"}]``; repeats_data : the R matched (N, D) repeats.
    """

    name: str
    path: Path
    n_dataset: int
    n_found: int
    matched_by: str
    dropped: int
    subset: bool
    layer_names: list[str]
    dims: list[int]
    repeats: int
    files: list[dict]
    replaced: bool = False
    repeats_data: list[torch.Tensor] = field(default_factory=list, repr=False)

    def lines(self) -> list[str]:
        """The report as plain sentences (what `prh import` prints)."""
        out = []
        for f in self.files:
            out.append(f"read {f['path']} ({f['format']}, {f['rows']} rows, sha256 {f['sha256'][:12]})")
        if self.matched_by == "ids":
            out.append(
                f"matched rows to items by id: {self.n_found} of the dataset's {self.n_dataset} items found"
                + (
                    f"; {self.dropped} row(s) whose id is not in the dataset were left out"
                    if self.dropped
                    else ""
                )
            )
            if self.subset:
                out.append(
                    f"--subset: stored the {self.n_found} shared items with their mask; alignments with this model "
                    f"use only those items"
                )
        else:
            out.append(
                f"no ids in the file: trusting the row order ({self.n_dataset} rows = the dataset's items)"
            )
        dims = ", ".join(f"{n} ({d})" for n, d in zip(self.layer_names, self.dims))
        out.append(f"{len(self.layer_names)} layer(s): {dims}")
        if self.repeats:
            out.append(
                f"{self.repeats} repeated measurements: stored their mean and the repeats (noise ceiling)"
            )
        out.append(f"{'replaced' if self.replaced else 'stored'} {self.name!r} at {self.path}")
        return out


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# -- reading ----------------------------------------------------------------------------------------------------
def _fail(path: Path, what: str) -> InputError:
    return InputError(f"{path}: {what}")


def _ids_of(values: Any, path: Path, where: str) -> list[str]:
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise _fail(path, f"the ids ({where}) must be one value per row, got shape {arr.shape}.")
    if arr.dtype.kind in "fc":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise _fail(path, f"the ids ({where}) must be strings or integers, not fractional numbers.")
        arr = arr.astype(np.int64)
    out = []
    for v in arr.tolist():
        out.append(v.decode("utf-8") if isinstance(v, bytes) else str(v))
    return out


def _numeric(arr: np.ndarray, path: Path, name: str) -> np.ndarray:
    """``arr`` as a float array (integers become float32); InputError for anything that is not numbers."""
    if arr.dtype.kind == "f":
        return arr
    if arr.dtype.kind in "iu":
        return arr.astype(np.float32)
    raise _fail(
        path,
        f"{name} holds {arr.dtype} values, not numbers; the features must be a numeric (float) array.",
    )


def _np_load(path: Path) -> Any:
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as err:
        if "pickle" in str(err).lower():
            raise _fail(
                path,
                "it holds Python objects (a pickled object array); prh never unpickles. Save plain arrays, e.g. "
                "ids as np.array(ids, dtype=str) and features as float arrays.",
            ) from None
        raise _fail(path, f"it is not a readable numpy file ({err}).") from None
    except OSError as err:
        raise _fail(path, f"it cannot be read as a numpy file ({err}).") from None


def _pick(available: list[str], config: ImportConfig, id_key: str | None, path: Path, what: str) -> list[str]:
    if config.keys:
        missing = [k for k in config.keys if k not in available]
        if missing:
            raise _fail(path, f"no {what} named {missing}; it has {available}.")
        return list(config.keys)
    keys = [k for k in available if k != id_key]
    if not keys:
        raise _fail(path, f"it holds no feature {what} (only {available}).")
    return keys


def _id_key(available: Sequence[str], config: ImportConfig, path: Path, what: str) -> str | None:
    if config.id_column is not None:
        if config.id_column not in available:
            raise _fail(path, f"id_column={config.id_column!r} is not one of its {what} {list(available)}.")
        return config.id_column
    return next((k for k in ID_NAMES if k in available), None)


def _read_npy(path: Path, config: ImportConfig) -> _Read:
    arr = _np_load(path)
    if not isinstance(arr, np.ndarray):
        raise _fail(path, "it holds several arrays; name it .npz.")
    if config.id_column is not None:
        raise _fail(path, "a .npy file holds one array and no ids; save ids and features together in a .npz.")
    return _Read(path, "npy", [_numeric(arr, path, "the array")], [path.stem], None)


def _read_npz(path: Path, config: ImportConfig) -> _Read:
    with _np_load(path) as z:
        available = list(z.files)
        id_key = _id_key(available, config, path, "arrays")
        keys = _pick(available, config, id_key, path, "arrays")
        try:
            arrays = [_numeric(z[k], path, f"array {k!r}") for k in keys]
            ids = _ids_of(z[id_key], path, f"array {id_key!r}") if id_key else None
        except ValueError as err:
            if "pickle" in str(err).lower():
                raise _fail(
                    path,
                    "an array holds Python objects (pickled); prh never unpickles. Save ids as "
                    "np.array(ids, dtype=str) and features as float arrays.",
                ) from None
            raise
    return _Read(path, "npz", arrays, keys, ids, id_key or "")


def _read_safetensors(path: Path, config: ImportConfig) -> _Read:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            available = list(fh.keys())
            meta = fh.metadata() or {}
            id_key = _id_key(available, config, path, "tensors") if available else None
            keys = _pick(available, config, id_key, path, "tensors")
            arrays = [_numeric(fh.get_tensor(k), path, f"tensor {k!r}") for k in keys]
            ids = _ids_of(fh.get_tensor(id_key), path, f"tensor {id_key!r}") if id_key else None
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - safetensors raises several types for a bad file
        raise _fail(path, f"it is not a readable safetensors file ({type(err).__name__}: {err}).") from None
    if ids is None and "ids" in meta:
        try:
            ids = _ids_of(json.loads(meta["ids"]), path, "metadata 'ids'")
            id_key = "metadata:ids"
        except ValueError:
            raise _fail(path, "its metadata 'ids' is not a JSON list of ids.") from None
    return _Read(path, "safetensors", arrays, keys, ids, id_key or "")


def _list_cell(value: Any, path: Path, row: int, column: str) -> np.ndarray:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise _fail(
                path, f"row {row} of column {column!r} is not a list of numbers ({value[:40]!r})."
            ) from None
    try:
        arr = np.asarray(value, dtype=np.float64 if not isinstance(value, np.ndarray) else None)
    except (TypeError, ValueError):
        raise _fail(path, f"row {row} of column {column!r} is not a list of numbers.") from None
    if arr.ndim != 1:
        raise _fail(
            path, f"row {row} of column {column!r} must be a flat list of numbers, got shape {arr.shape}."
        )
    return _numeric(arr, path, f"row {row} of column {column!r}")


def _read_table(path: Path, config: ImportConfig, fmt: str) -> _Read:
    import pandas as pd

    try:
        if fmt == "csv":
            head = pd.read_csv(path, nrows=0)
            id_key = _id_key(list(head.columns), config, path, "columns")
            frame = pd.read_csv(path, dtype={id_key: str} if id_key else None, float_precision="round_trip")
        else:
            frame = pd.read_parquet(path)
            id_key = _id_key([str(c) for c in frame.columns], config, path, "columns")
    except InputError:
        raise
    except Exception as err:  # noqa: BLE001 - pandas / pyarrow raise many types for a bad file
        raise _fail(
            path, f"it is not a readable {fmt} table ({type(err).__name__}: {str(err)[:200]})."
        ) from None
    frame.columns = [str(c) for c in frame.columns]
    columns = _pick(list(frame.columns), config, id_key, path, "columns")
    ids = None
    if id_key:
        if frame[id_key].isna().any():
            raise _fail(
                path, f"id column {id_key!r} has empty cells (row {int(frame[id_key].isna().argmax())})."
            )
        ids = _ids_of(frame[id_key].to_numpy(), path, f"column {id_key!r}")
    if len(columns) == 1 and not pd.api.types.is_numeric_dtype(frame[columns[0]]):  # one list-valued column
        column = columns[0]
        rows = [_list_cell(v, path, i, column) for i, v in enumerate(frame[column].tolist())]
        widths = {len(r) for r in rows}
        if len(widths) > 1:
            first = len(rows[0])
            bad = next(i for i, r in enumerate(rows) if len(r) != first)
            raise _fail(
                path,
                f"ragged rows in column {column!r}: row 0 has {first} values, row {bad} has {len(rows[bad])}; "
                f"every row needs the same number of features.",
            )
        arr = np.stack(rows) if rows else np.zeros((0, 0))
        return _Read(path, fmt, [arr], [column], ids, id_key or "")
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c]) or frame[c].dtype == bool]
    if bad:
        raise _fail(
            path,
            f"column(s) {bad[:5]} are not numeric; give the feature columns with --key (or one list-valued column) "
            f"and the id column with --id-column.",
        )
    arr = frame[columns].to_numpy()
    if arr.dtype.kind not in "f":
        arr = _numeric(arr, path, "the feature columns")
    name = columns[0] if len(columns) == 1 else "features"
    return _Read(path, fmt, [arr], [name], ids, id_key or "")


def _read_hdf5(path: Path, config: ImportConfig) -> _Read:
    try:
        import h5py
    except ImportError:
        raise _fail(path, "reading HDF5 needs h5py: pip install 'prh[hdf5]' (or pip install h5py).") from None
    try:
        fh = h5py.File(path, "r")
    except OSError as err:
        raise _fail(path, f"it is not a readable HDF5 file ({err}).") from None
    with fh:
        available: list[str] = []
        fh.visititems(lambda name, obj: available.append(name) if isinstance(obj, h5py.Dataset) else None)
        id_key = _id_key(available, config, path, "datasets")
        keys = _pick(available, config, id_key, path, "datasets")
        arrays = []
        for k in keys:
            data = fh[k][()]
            arrays.append(_numeric(np.asarray(data), path, f"dataset {k!r}"))
        ids = _ids_of(fh[id_key][()], path, f"dataset {id_key!r}") if id_key else None
    return _Read(path, "hdf5", arrays, keys, ids, id_key or "")


def read_file(path: str | Path, config: ImportConfig | None = None) -> _Read:
    """Read one file (format from its suffix); InputError for an unknown suffix or a malformed file."""
    config = ImportConfig.coerce(config)
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"{path}: no such file.")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise _fail(path, f"unknown format {path.suffix!r}; use one of {sorted(set(FORMATS))}.")
    readers = {
        "npy": _read_npy,
        "npz": _read_npz,
        "safetensors": _read_safetensors,
        "hdf5": _read_hdf5,
    }
    return _read_table(path, config, fmt) if fmt in ("csv", "parquet") else readers[fmt](path, config)


# -- checking and matching ---------------------------------------------------------------------------------------
def _layers_of(read: _Read, repeats: bool) -> tuple[list[np.ndarray], list[str]]:
    """A file's arrays as (N, D) layers (or, for repeats, (N, D) repeats), with names; rank errors here."""
    out, names = [], []
    for arr, name in zip(read.arrays, read.names):
        label = f"{name!r}" if len(read.arrays) > 1 else "the features"
        if repeats:
            if arr.ndim == 3:
                out += [arr[r] for r in range(arr.shape[0])]
                names += [f"{name}.repeat{r}" for r in range(arr.shape[0])]
                continue
            if arr.ndim == 2:
                out.append(arr)
                names.append(name)
                continue
            raise _fail(
                read.path,
                f"{label} has shape {arr.shape}: repeated measurements must be (R, N, D), or (N, D) per file.",
            )
        if arr.ndim == 2:
            out.append(arr)
            names.append(name)
        elif arr.ndim == 3:
            out += [arr[:, i, :] for i in range(arr.shape[1])]
            names += [f"{name}.{i}" if len(read.arrays) > 1 else f"layer.{i}" for i in range(arr.shape[1])]
        else:
            raise _fail(
                read.path,
                f"{label} has rank {arr.ndim} (shape {arr.shape}); give (N, D) for one layer or (N, L, D) for L "
                f"layers (with --repeats: (R, N, D)).",
            )
    rows = {a.shape[0] for a in out}
    if len(rows) > 1:
        raise _fail(
            read.path, f"its arrays have different numbers of rows {sorted(rows)}; every layer needs N rows."
        )
    if read.ids is not None and out and len(read.ids) != out[0].shape[0]:
        raise _fail(read.path, f"it has {len(read.ids)} ids for {out[0].shape[0]} rows; they must match.")
    for arr, name in zip(out, names):
        if arr.shape[1] == 0:
            raise _fail(read.path, f"{name!r} has no feature columns (D = 0).")
        finite = np.isfinite(arr)
        if not finite.all():
            row, col = (int(i) for i in np.argwhere(~finite)[0])
            item = f" (id {read.ids[row]!r})" if read.ids is not None else ""
            raise _fail(
                read.path,
                f"{name!r} holds {int((~finite).sum())} NaN/Inf value(s), the first at row {row}{item}, column "
                f"{col}; remove or fix those rows (with ids, --subset imports the rest).",
            )
    return out, names


def _match(read: _Read, n_rows: int, dataset_ids: list[str], subset: bool) -> tuple[np.ndarray, int]:
    """For each dataset item, the file's row (-1: absent); and the number of file rows not in the dataset."""
    n = len(dataset_ids)
    if read.ids is None:
        if n_rows != n:
            raise _fail(
                read.path,
                f"it has {n_rows} rows but the dataset has N={n} items, and no ids to match them by; give the id "
                f"column with --id-column (or an 'ids' array), or rows for exactly the dataset's {n} items in order.",
            )
        return np.arange(n), 0
    seen: dict[str, int] = {}
    dups = []
    for row, item in enumerate(read.ids):
        if item in seen:
            dups.append(item)
        seen[item] = row
    if dups:
        shown = ", ".join(repr(d) for d in dict.fromkeys(dups))
        raise _fail(read.path, f"{len(dups)} duplicate id(s) ({shown[:200]}); every item may appear once.")
    index = np.array([seen.get(item, -1) for item in dataset_ids], dtype=np.int64)
    wanted = set(dataset_ids)
    dropped = sum(1 for item in read.ids if item not in wanted)
    missing = [item for item, row in zip(dataset_ids, index) if row < 0]
    if missing and not subset:
        shown = ", ".join(repr(m) for m in missing[:5]) + (", ..." if len(missing) > 5 else "")
        raise _fail(
            read.path,
            f"{len(missing)} of the dataset's {n} items are not in the file ({shown}); pass --subset to import the "
            f"{n - len(missing)} shared items (alignments then use only those).",
        )
    if not (index >= 0).any():
        raise _fail(
            read.path, f"none of its {len(read.ids)} ids is an item of the dataset (e.g. {read.ids[0]!r})."
        )
    return index, dropped


def _arrange(arr: np.ndarray, index: np.ndarray) -> torch.Tensor:
    """Rows of ``arr`` in dataset order; absent items (index -1) are zero rows (masked out by ``sample.present``)."""
    present = index >= 0
    if present.all():
        out = arr[index]
    else:
        out = np.zeros((len(index), arr.shape[1]), dtype=arr.dtype)
        out[present] = arr[index[present]]
    return torch.from_numpy(np.ascontiguousarray(out))


# -- the import -------------------------------------------------------------------------------------------------
def import_features(
    name: str,
    files: str | Path | Sequence[str | Path],
    dataset: Any,
    store: Any,
    config: ImportConfig | dict | None = None,
) -> ImportReport:
    """Read embeddings from ``files``, match them to ``dataset``'s items and store them as model ``name``.

    Parameters
    ----------
    name : str
        The model name the imported features get (used by ``prh align --models`` and :class:`prh.Alignment`); it
        may not be a registered non-imported model.
    files : path or list of paths
        ``.npy``, ``.npz``, ``.safetensors``, ``.parquet``, ``.csv``, ``.h5``/``.hdf5``. Several files give several
        layers, in order (or, with ``repeats``, several repeats).
    dataset : PairedDataset
        The items the rows belong to (:func:`prh.data.load_dataset`).
    store : FeatureStore
    config : ImportConfig or mapping, optional

    Returns
    -------
    ImportReport

    Raises
    ------
    InputError
        A malformed file (unknown format, wrong rank, non-numeric, NaN/Inf, ragged rows, ids that do not match),
        a name taken by a registered model, or layer names that do not fit. Nothing is stored then.
    """
    config = ImportConfig.coerce(config)
    name = check_str(name, "name", allow_empty=False).strip()
    if not name or any(c in name for c in ",\n"):
        raise InputError(f"name={name!r} must be a non-empty model name without commas.")
    _check_name_free(name, store, dataset, config.pool)
    paths = [files] if isinstance(files, (str, Path)) else list(files)
    if not paths:
        raise InputError("no files to import; give at least one.")
    dataset_ids = [str(i) for i in dataset.ids]
    layers: list[torch.Tensor] = []
    names: list[str] = []
    masks: list[np.ndarray] = []
    infos: list[dict] = []
    matched_by, dropped = "order", 0
    for p in paths:
        read = read_file(p, config)
        arrays, array_names = _layers_of(read, config.repeats)
        index, file_dropped = _match(read, arrays[0].shape[0], dataset_ids, config.subset)
        dropped += file_dropped
        if read.ids is not None:
            matched_by = "ids"
        masks.append(index >= 0)
        layers += [_arrange(a, index) for a in arrays]
        names += array_names if len(paths) == 1 or len(array_names) > 1 else [read.path.stem]
        infos.append(
            {
                "path": str(read.path.resolve()),
                "format": read.fmt,
                "sha256": file_sha256(read.path),
                "rows": int(arrays[0].shape[0]),
                "ids": read.id_source or None,
            }
        )
    present = np.logical_and.reduce(masks)
    if not present.any():
        raise InputError(f"the files {[str(p) for p in paths]} share no item of the dataset.")
    repeats: list[torch.Tensor] = []
    if config.repeats:
        widths = {int(t.shape[1]) for t in layers}
        if len(layers) < 2 or len(widths) != 1:
            raise InputError(
                f"repeats: need R >= 2 repeated measurements of one width, got {len(layers)} of width(s) "
                f"{sorted(widths)}; give one (R, N, D) array or one (N, D) file per repeat."
            )
        dtype = torch.float64 if any(t.dtype == torch.float64 for t in layers) else torch.float32
        repeats = [t.to(dtype) for t in layers]
        layers = [torch.stack(repeats).mean(0)]
        names = ["mean"]
    if config.layer_names is not None:
        if len(config.layer_names) != len(layers):
            raise InputError(
                f"layer_names has {len(config.layer_names)} names for {len(layers)} layer(s) ({names})."
            )
        names = list(config.layer_names)
    if len(set(names)) != len(names):
        names = [f"{i}:{n}" for i, n in enumerate(names)]
    per_sample = {}
    subset = not bool(present.all())
    if subset:
        per_sample["present"] = torch.from_numpy(present.astype(np.float32))
        keep = torch.from_numpy(present)
        layers = [t * keep[:, None].to(t.dtype) for t in layers]  # rows of items some file lacks are zero
        repeats = [t * keep[:, None].to(t.dtype) for t in repeats]
    n_found = int(present.sum())
    meta = {
        "adapter": ADAPTER,
        "modality": config.modality,
        "family": config.family,
        "params": config.params,
        "citation": config.citation,
        "source": ", ".join(info["path"] for info in infos),
        "source_files": infos,
        "matching": {"by": matched_by, "found": n_found, "n": len(dataset_ids), "dropped_rows": dropped},
        "items": {"n": len(dataset_ids), "present": n_found} if subset else None,
        "import_config": config.to_dict(),
    }
    replaced = store.meta(dataset, name, config.pool) is not None
    path = store.save(dataset, name, config.pool, layers, names, per_sample, meta, repeats=repeats)
    return ImportReport(
        name=name,
        path=path,
        n_dataset=len(dataset_ids),
        n_found=n_found,
        matched_by=matched_by,
        dropped=dropped,
        subset=subset,
        layer_names=names,
        dims=[int(t.shape[1]) for t in layers],
        repeats=len(repeats),
        files=infos,
        replaced=replaced,
        repeats_data=[t[torch.from_numpy(present)] for t in repeats],
    )


def _check_name_free(name: str, store: Any, dataset: Any, pool: str) -> None:
    """A registered model that is not imported, or stored features that were extracted, keep their name."""
    from prh.models.registry import get_model, model_names

    if name in model_names() and get_model(name).adapter != ADAPTER:
        raise InputError(
            f"name {name!r} is a registered {get_model(name).adapter} model; give the imported embeddings another "
            f"name (e.g. {name + '-imported'!r})."
        )
    meta = store.meta(dataset, name, pool)
    if meta is not None and meta.get("adapter") != ADAPTER:
        raise InputError(
            f"the store already holds extracted features named {name!r} (adapter {meta.get('adapter')}); give the "
            f"imported embeddings another name."
        )


# -- imported models as model specs -------------------------------------------------------------------------------
def imported_specs(store: Any) -> dict[str, ModelSpec]:
    """``{name: ModelSpec}`` of every imported model in ``store`` (adapter ``"imported"``, its modality label,
    family, params and pooling from the sidecar), so that `prh align --models NAME` resolves an imported name."""
    out: dict[str, ModelSpec] = {}
    for entry in store.entries():
        if entry.get("adapter") != ADAPTER or not isinstance(entry.get("model"), str):
            continue
        params = entry.get("params")
        out.setdefault(
            entry["model"],
            ModelSpec(
                name=entry["model"],
                source=str(entry.get("source") or ""),
                adapter=ADAPTER,
                modality=str(entry.get("modality") or "unknown"),
                family=str(entry.get("family") or ""),
                params=int(params) if isinstance(params, int) and params > 0 else None,
                pool=str(entry.get("pool") or "mean"),
                description=str(entry.get("citation") or "imported embeddings"),
            ),
        )
    return out


def config_of_spec(spec: ModelSpec) -> ImportConfig:
    """The :class:`ImportConfig` of a models-file entry with ``adapter = "imported"``."""
    opts = dict(spec.options)
    return ImportConfig(
        modality=spec.modality,
        family=spec.family,
        params=spec.params,
        citation=opts.get("citation", spec.description),
        layer_names=opts.get("layers"),
        id_column=opts.get("id_column"),
        keys=opts.get("keys"),
        repeats=opts.get("repeats", False),
        subset=opts.get("subset", False),
        pool=spec.pool,
    )


def spec_files(spec: ModelSpec) -> list[Path]:
    """The files of a models-file entry (``path`` may name several, separated by commas)."""
    return [Path(p.strip()).expanduser() for p in spec.source.split(",") if p.strip()]


def ensure_imported(specs: Sequence[ModelSpec], dataset: Any, store: Any) -> list[ImportReport]:
    """Import every models-file entry with ``adapter = "imported"`` whose features are not stored for ``dataset``
    or whose files changed since (sha256); returns the reports of the imports done."""
    done = []
    for spec in specs:
        if spec.adapter != ADAPTER or not spec.source:
            continue
        meta = store.meta(dataset, spec.name, spec.pool)
        files = spec_files(spec)
        if meta is not None:
            stored = [f.get("sha256") for f in meta.get("source_files") or []]
            if all(p.is_file() for p in files) and stored == [file_sha256(p) for p in files]:
                continue
        done.append(import_features(spec.name, files, dataset, store, config_of_spec(spec)))
    return done


def shared_items(stored: Sequence[Any]) -> torch.Tensor | None:
    """The items every one of ``stored`` (StoredFeatures) has, as a bool mask, or None when they all have all items
    (an imported subset keeps a ``present`` mask per item)."""
    masks = [s.per_sample["present"] > 0 for s in stored if "present" in s.per_sample]
    if not masks:
        return None
    mask = masks[0]
    for m in masks[1:]:
        mask = mask & m
    if not bool(mask.any()):
        raise InputError("the models share no item: their imported subsets do not overlap.")
    return mask


__all__ = [
    "ADAPTER",
    "FORMATS",
    "ImportConfig",
    "ImportReport",
    "config_of_spec",
    "ensure_imported",
    "file_sha256",
    "import_features",
    "imported_specs",
    "read_file",
    "shared_items",
]
