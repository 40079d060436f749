"""The feature store: one safetensors file per (dataset, model, pooling) with a JSON sidecar of provenance.

Layout::

    <root>/<dataset slug>-n<N>/<model slug>__<pool>.safetensors   # tensors "layer.000", ..., "sample.<name>"
    <root>/<dataset slug>-n<N>/<model slug>__<pool>.json          # sidecar: model, layers, dataset fingerprint, ...

Writes are atomic: each file is written to a temporary file in the same folder and moved into place with
``os.replace``; the safetensors file goes first and the sidecar last, so a sidecar means "complete". Both files
carry the same random ``write_id``, so a safetensors file from an interrupted rewrite is never paired with an older
sidecar. No pickle anywhere: tensors are read with safetensors, metadata with json.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import re
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from prh.atomic import atomic_write, atomic_write_text
from prh.errors import ExtractionError, InputError, MissingFeaturesError
from prh.models.result import FeatureResult

if TYPE_CHECKING:
    from prh.data.base import PairedDataset

__all__ = ["DEFAULT_ROOT", "FeatureStore", "StoredFeatures", "slug"]

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
    "dataset",
    "prh_version",
    "created",
    "write_id",
    "files",
)


def _prh_version() -> str:
    try:
        import prh

        version = getattr(prh, "__version__", None)
        if version:
            return str(version)
    except ImportError:  # pragma: no cover
        pass
    try:
        from importlib.metadata import version

        return version("prh")
    except Exception:  # pragma: no cover - not installed as a distribution
        return "unknown"


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


def _jsonable(value: Any) -> Any:
    """Best-effort conversion of metadata values to JSON (numpy/torch scalars, paths, tensors, NaN -> None)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    if isinstance(value, torch.Tensor):
        return (
            _jsonable(value.detach().cpu().tolist())
            if value.numel() <= 4096
            else f"<tensor {tuple(value.shape)}>"
        )
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy arrays
        return _jsonable(value.tolist())
    if hasattr(value, "__dataclass_fields__"):
        from dataclasses import asdict

        return _jsonable(asdict(value))
    return str(value)


class StoredFeatures(FeatureResult):
    """Features of one model on one dataset, as read back from the store: a :class:`FeatureResult` (layers,
    layer_names, per_sample, ``n``, ``dims``) whose ``meta`` is the JSON sidecar, plus :meth:`stacked`."""

    def stacked(self) -> torch.Tensor:
        """All layers as one (N, L, D) tensor; InputError when the layers have different widths."""
        dims = sorted({int(t.shape[1]) for t in self.layers})
        if len(dims) != 1:
            raise InputError(
                f"the layers of {self.meta.get('model', 'this model')!r} have different widths {dims}; they cannot "
                f"be stacked into (N, L, D). Use .layers (a list of (N, D_l) tensors) instead."
            )
        return torch.stack(self.layers, dim=1)


class FeatureStore:
    """A folder of extracted features (see the module docstring for the layout).

    Parameters
    ----------
    root : str or PathLike
        The store folder (default ``prh-cache/features``); created on the first save.
    """

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT) -> None:
        self.root = Path(root).expanduser()

    def __repr__(self) -> str:
        return f"FeatureStore({str(self.root)!r})"

    # -- paths ------------------------------------------------------------------------------------------------
    def _dir(self, dataset_name: str, n: int) -> Path:
        return self.root / f"{slug(dataset_name)}-n{n}"

    def path(self, dataset: PairedDataset, model: str, pool: str) -> Path:
        """Path of the safetensors file for (dataset, model, pool); its sidecar has the same stem and ``.json``."""
        return self._dir(dataset.name, len(dataset)) / f"{slug(model)}__{slug(pool)}.safetensors"

    @staticmethod
    def _sidecar(path: Path) -> Path:
        return path.with_suffix(".json")

    # -- queries ----------------------------------------------------------------------------------------------
    def _read_sidecar(self, path: Path) -> dict | None:
        try:
            meta = json.loads(self._sidecar(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) and meta.get("format") == FORMAT else None

    @staticmethod
    def _file_write_id(path: Path) -> str | None:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt") as fh:
                return (fh.metadata() or {}).get("write_id")
        except Exception:  # any unreadable / truncated file counts as absent
            return None

    def _complete(self, path: Path, meta: dict | None) -> bool:
        return meta is not None and path.is_file() and self._file_write_id(path) == meta.get("write_id")

    def has(self, dataset: PairedDataset, model: str, pool: str) -> bool:
        """True when complete features exist for exactly this dataset (same fingerprint), model and pooling."""
        path = self.path(dataset, model, pool)
        meta = self._read_sidecar(path)
        if not self._complete(path, meta):
            return False
        assert meta is not None
        return meta.get("dataset", {}).get("fingerprint") == dataset.fingerprint()

    def entries(self) -> list[dict]:
        """Every complete entry's sidecar, with ``"path"`` (the safetensors file) added; sorted by path."""
        out = []
        if not self.root.is_dir():
            return out
        for sidecar in sorted(self.root.glob("*/*.json")):
            path = sidecar.with_suffix(".safetensors")
            meta = self._read_sidecar(path)
            if self._complete(path, meta):
                assert meta is not None
                out.append({**meta, "path": str(path)})
        return out

    # -- writing ----------------------------------------------------------------------------------------------
    def save(
        self,
        dataset: PairedDataset,
        model: str,
        pool: str,
        layers: list[torch.Tensor],
        layer_names: list[str],
        per_sample: dict[str, torch.Tensor] | None,
        meta: dict,
    ) -> Path:
        """Write features atomically and return the safetensors path.

        Parameters
        ----------
        layers : list of torch.Tensor
            L tensors of shape (N, D_l), N = ``len(dataset)``; must be finite. Stored in their own float dtype.
        layer_names : list of str
            Length L.
        per_sample : dict, optional
            Per-item arrays of shape (N,) (e.g. ``bpb``).
        meta : dict
            Provenance from the extractor (model id, revision, adapter, dtype, params, competence, wall time...).
            The store adds ``dataset`` (name, fingerprint, n), ``prh_version``, ``created`` and the layout keys.

        Raises
        ------
        InputError
            Shapes that do not match the dataset or each other.
        ExtractionError
            Non-finite features (NaN/Inf): nothing is written.
        """
        n = len(dataset)
        if not layers:
            raise InputError(f"no layers to save for model {model!r}.")
        if len(layers) != len(layer_names):
            raise InputError(f"{len(layers)} layers but {len(layer_names)} layer names for model {model!r}.")
        if len(set(layer_names)) != len(layer_names):
            raise InputError(f"layer names of model {model!r} must be unique, got {layer_names}.")
        tensors: dict[str, torch.Tensor] = {}
        for idx, (name, t) in enumerate(zip(layer_names, layers)):
            if not isinstance(t, torch.Tensor) or t.ndim != 2 or t.shape[0] != n:
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise InputError(
                    f"layer {name!r} of model {model!r} must have shape (N={n}, D), got {shape}."
                )
            if not torch.is_floating_point(t):
                raise InputError(f"layer {name!r} of model {model!r} must be a float tensor, got {t.dtype}.")
            if not bool(torch.isfinite(t).all()):
                bad = int((~torch.isfinite(t)).sum())
                raise ExtractionError(
                    f"model {model!r} produced {bad} NaN/Inf value(s) in layer {name!r}; nothing was saved. "
                    f"Try dtype float32 instead of float16/bfloat16."
                )
            tensors[f"layer.{idx:03d}"] = _own_storage(t)
        per_sample = dict(per_sample or {})
        for key, t in per_sample.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
                raise InputError(f"per-sample array name {key!r} must match [A-Za-z0-9_.-]+.")
            if not isinstance(t, torch.Tensor) or t.shape != (n,):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise InputError(f"per-sample array {key!r} must have shape (N={n},), got {shape}.")
            tensors[f"sample.{key}"] = _own_storage(t)

        path = self.path(dataset, model, pool)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_id = uuid.uuid4().hex
        sidecar = {k: v for k, v in (meta or {}).items() if k not in RESERVED_KEYS}
        if "model" in (meta or {}) and meta["model"] != model:
            sidecar["model_info"] = meta["model"]
        sidecar.update(
            {
                "format": FORMAT,
                "format_version": FORMAT_VERSION,
                "model": model,
                "pool": pool,
                "layer_names": list(layer_names),
                "layer_dims": [int(t.shape[1]) for t in layers],
                "n": n,
                "storage_dtype": str(layers[0].dtype).replace("torch.", ""),
                "per_sample": sorted(per_sample),
                "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint(), "n": n},
                "prh_version": _prh_version(),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "write_id": write_id,
                "files": {"safetensors": path.name},
            }
        )
        sidecar.setdefault("dtype", sidecar["storage_dtype"])
        text = json.dumps(_jsonable(sidecar), indent=2, sort_keys=False, allow_nan=False)

        from safetensors.torch import save_file

        header = {"format": FORMAT, "write_id": write_id, "model": model, "pool": pool}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
        atomic_write_text(self._sidecar(path), text + "\n")
        return path

    # -- reading ----------------------------------------------------------------------------------------------
    def _resolve_by_name(self, dataset_name: str, model: str, pool: str, n: int | None) -> Path | None:
        """The safetensors path for a dataset given only by name (or by its folder name ``<slug>-n<N>``)."""
        hits = []
        for entry in self.entries():
            ds = entry.get("dataset", {})
            folder = Path(entry["path"]).parent.name
            named = ds.get("name") == dataset_name or folder == dataset_name
            if named and entry.get("model") == model and entry.get("pool") == pool:
                if n is None or ds.get("n") == n:
                    hits.append(entry)
        if not hits:
            return None
        ns = sorted({h["dataset"]["n"] for h in hits})
        if len(ns) > 1:
            raise InputError(
                f"features of {model!r} on dataset {dataset_name!r} exist for several sizes N={ns}; "
                f"say which one (load(..., n=N) or pass the dataset itself)."
            )
        return Path(hits[0]["path"])

    def find_many(
        self,
        names: Sequence[str],
        pools: str | Mapping[str, str],
        dataset: PairedDataset | None = None,
        dataset_name: str | None = None,
        n: int | None = None,
    ) -> dict[str, dict]:
        """Each model's sidecar (``{name: meta}``, without ``"path"``), without loading any tensor.

        Give either the ``dataset`` itself (each entry checked by fingerprint) or only its ``dataset_name`` (the
        name or the folder name ``<slug>-n<N>``) and ``n`` when several sizes are stored. ``pools`` is one pooling
        for every model or a ``{name: pool}`` mapping.

        Raises
        ------
        MissingFeaturesError
            One or more models lack features; the message lists every missing model with the store's own
            message (and the ``prh extract`` command to run).
        InputError
            Neither ``dataset`` nor ``dataset_name``; several sizes N stored and ``n`` not given; or the found
            models' features were extracted on different data (dataset fingerprints disagree).
        """
        if dataset is None and not dataset_name:
            raise InputError("find_many() needs a dataset or a dataset_name.")
        names = list(names)
        pool_of = {name: (pools if isinstance(pools, str) else pools[name]) for name in names}
        entries = self.entries()
        by_path = {e["path"]: e for e in entries}
        found: dict[str, dict] = {}
        missing: list[str] = []
        for name in names:
            pool = pool_of[name]
            entry: dict | None
            if dataset is not None:
                entry = by_path.get(str(self.path(dataset, name, pool)))
                if (
                    entry is not None
                    and (entry.get("dataset") or {}).get("fingerprint") != dataset.fingerprint()
                ):
                    entry = None
            else:
                hits = [
                    e
                    for e in entries
                    if (
                        (e.get("dataset") or {}).get("name") == dataset_name
                        or Path(e["path"]).parent.name == dataset_name
                    )
                    and e.get("model") == name
                    and e.get("pool") == pool
                    and (n is None or (e.get("dataset") or {}).get("n") == n)
                ]
                sizes = sorted({(h.get("dataset") or {}).get("n") for h in hits}, key=str)
                if len(sizes) > 1:
                    raise InputError(
                        f"features of {name!r} on dataset {dataset_name!r} exist for several sizes N={sizes}; "
                        f"say which one (n=N, --n N) or pass the dataset itself."
                    )
                entry = hits[0] if hits else None
            if entry is None:
                missing.append(name)
            else:
                found[name] = {k: v for k, v in entry.items() if k != "path"}
        if missing:
            messages = []
            for name in missing:  # the store's own message (with the `prh extract` command)
                try:
                    self.load(dataset, name, pool_of[name], dataset_name=dataset_name, n=n)
                    messages.append(f"features of {name!r} appeared while checking; re-run")
                except MissingFeaturesError as err:
                    messages.append(str(err))
            raise MissingFeaturesError(
                f"features of {len(messages)} model(s) are missing:\n  " + "\n  ".join(messages)
            )
        fingerprints: dict[str, list[str]] = {}
        for name, meta in found.items():
            fingerprints.setdefault((meta.get("dataset") or {}).get("fingerprint", "?"), []).append(name)
        if len(fingerprints) > 1:
            groups = "; ".join(f"{fp[:12]}: {', '.join(ns)}" for fp, ns in fingerprints.items())
            raise InputError(
                f"the models' features were extracted on different data (dataset fingerprints {groups}); "
                f"re-extract them on one dataset with `prh extract --force`."
            )
        return found

    def load(
        self,
        dataset: PairedDataset | None,
        model: str,
        pool: str,
        dataset_name: str | None = None,
        *,
        n: int | None = None,
    ) -> StoredFeatures:
        """Read features back (float32, CPU), checking they belong to ``dataset`` (same fingerprint).

        Give either the ``dataset`` itself (checked by fingerprint) or only its ``dataset_name`` (and ``n`` when
        several sizes are stored; no fingerprint check).

        Raises
        ------
        MissingFeaturesError
            Nothing stored, an incomplete write, or features of another version of the dataset; the message
            gives the ``prh extract`` command that (re)computes them.
        """
        if dataset is None and not dataset_name:
            raise InputError("load() needs a dataset or a dataset_name.")
        name = dataset.name if dataset is not None else str(dataset_name)
        size = len(dataset) if dataset is not None else n
        if dataset is not None:
            path = self.path(dataset, model, pool)
        else:
            path = self._resolve_by_name(name, model, pool, n) or (
                self._dir(name, n) / f"{slug(model)}__{slug(pool)}.safetensors" if n else None
            )
        meta = self._read_sidecar(path) if path is not None else None
        reason = ""
        if path is None or not self._complete(path, meta):
            reason = "no features stored"
        elif dataset is not None and meta.get("dataset", {}).get("fingerprint") != dataset.fingerprint():
            reason = "the stored features were computed on a different version of this dataset (fingerprint mismatch)"
        if reason:
            cmd = f"prh extract --models {model} --dataset {_cli_dataset(name)}"
            if size:
                cmd += f" --n {size}"
            if pool != "mean":
                cmd += f" --pool {pool}"
            if str(self.root) != DEFAULT_ROOT:
                cmd += f" --out {self.root}"
            where = path if path is not None else self.root
            raise MissingFeaturesError(
                f"{reason} for model {model!r} (pool {pool}) on dataset {name!r} at {where}; run `{cmd}`."
            )
        assert path is not None and meta is not None

        from safetensors import safe_open

        layers: list[torch.Tensor] = []
        per_sample: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt", device="cpu") as fh:
            keys = set(fh.keys())
            for idx in range(len(meta["layer_names"])):
                key = f"layer.{idx:03d}"
                if key not in keys:
                    raise MissingFeaturesError(
                        f"{path} lacks tensor {key}; delete it and re-run `prh extract`."
                    )
                layers.append(fh.get_tensor(key).to(torch.float32))
            for key in sorted(keys):
                if key.startswith("sample."):
                    per_sample[key[len("sample.") :]] = fh.get_tensor(key)
        return StoredFeatures(
            layers=layers, layer_names=list(meta["layer_names"]), per_sample=per_sample, meta=meta
        )


def _cli_dataset(name: str) -> str:
    """The ``--dataset`` spelling of a stored dataset name: a folder's path, the paper's set by its revision."""
    from prh.data.hf import PAPER_REPO, PAPER_REVISION

    if name.startswith("folder:"):
        return name[len("folder:") :]
    if name == f"{PAPER_REPO}@{PAPER_REVISION}":
        return PAPER_REVISION
    return name


def _own_storage(t: torch.Tensor) -> torch.Tensor:
    """A contiguous CPU tensor that owns its storage (safetensors refuses views that share memory)."""
    t = t.detach().to("cpu")
    if (
        not t.is_contiguous()
        or t.untyped_storage().nbytes() != t.numel() * t.element_size()
        or t.storage_offset()
    ):
        t = t.contiguous().clone()
    return t
