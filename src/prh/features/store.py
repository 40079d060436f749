"""The feature store: one safetensors file per (dataset, model, pooling) with a JSON sidecar of provenance.

Layout::

    <root>/<dataset slug>-n<N>/<model slug>__<pool>.safetensors   # "layer.000", ..., "sample.<name>", "repeat.000"
    <root>/<dataset slug>-n<N>/<model slug>__<pool>.json          # sidecar: model, layers, dataset fingerprint, ...

Writes are atomic: each file is written to a temporary file in the same folder and moved into place with
``os.replace``; the safetensors file goes first and the sidecar last, so a sidecar means "complete". Both files
carry the same random ``write_id``, so a safetensors file from an interrupted rewrite is never paired with an older
sidecar. No pickle anywhere: tensors are read with safetensors, metadata with json.

Integrity: the sidecar holds the sha256 of every stored tensor's bytes (``"sha256"``); :meth:`FeatureStore.load`
checks the sidecar against the file (tensor names, rows N, widths, write id), then verifies the digests and that
every value is finite, once per file per process (cached by path, inode, mtime and size). A corrupt or
inconsistent file is refused with the ``prh extract --force`` command that rewrites it; an entry written before
digests were stored is loaded with a one-time :class:`~prh.errors.PrhWarning`.

The store is split by job into private modules; this module keeps the public names (:class:`FeatureStore`,
:class:`StoredFeatures`, ``slug``, ``tensor_digest(s)``, ``DEFAULT_ROOT``), writing and reading:

- :mod:`prh.features._store_layout` -- folder and file names (``slug``), the sidecar's reserved keys, JSON
  conversion of metadata, the ``--dataset`` spelling of a stored dataset;
- :mod:`prh.features._store_integrity` -- sha256 digests, the header-against-sidecar check, NaN/Inf checks and
  the per-process record of verified files;
- :mod:`prh.features._store_hints` -- lookup by dataset name and the hints of a missing entry (where else it is
  stored, the ``prh extract`` command that computes it).

Already split by job (:mod:`prh.features._store_layout`, :mod:`~prh.features._store_integrity`,
:mod:`~prh.features._store_hints`); what is left over ~450 lines is one class, :class:`FeatureStore`, whose read,
write and lookup methods share its folder layout.
"""

from __future__ import annotations

import json
import os
import re
import uuid
import warnings
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from prh._provenance import VERSION, utc_now
from prh.atomic import atomic_write, atomic_write_text
from prh.errors import ExtractionError, InputError, MissingFeaturesError, PrhWarning
from prh.features._store_hints import LookupHints
from prh.features._store_integrity import (  # noqa: F401 - _VERIFIED, _WARNED_UNVERIFIED: the per-process records
    _VERIFIED,
    _WARNED_UNVERIFIED,
    HASH_THREADS,
    check_finite_layer,
    check_header,
    tensor_digest,
)
from prh.features._store_layout import (  # noqa: F401 - re-exported layout names
    DEFAULT_ROOT,
    FORMAT,
    FORMAT_VERSION,
    RESERVED_KEYS,
    jsonable,
    own_storage,
    slug,
)
from prh.models.result import FeatureResult

if TYPE_CHECKING:
    from prh.data.base import PairedDataset

__all__ = ["DEFAULT_ROOT", "FeatureStore", "StoredFeatures", "slug", "tensor_digest", "tensor_digests"]


class StoredFeatures(FeatureResult):
    """Features of one model on one dataset, as read back from the store: a :class:`FeatureResult` (layers,
    layer_names, per_sample, ``n``, ``dims``) whose ``meta`` is the JSON sidecar, plus :meth:`stacked`.

    ``repeats`` holds the R repeated measurements (each (N, D), float32) of an imported recording whose first layer
    is their mean (see :func:`prh.features.import_features`); empty for every other entry."""

    def __init__(self, *args: Any, repeats: Sequence[torch.Tensor] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.repeats: list[torch.Tensor] = list(repeats or [])

    def stacked(self) -> torch.Tensor:
        """All layers as one (N, L, D) tensor; InputError when the layers have different widths."""
        dims = sorted({int(t.shape[1]) for t in self.layers})
        if len(dims) != 1:
            raise InputError(
                f"the layers of {self.meta.get('model', 'this model')!r} have different widths {dims}; they cannot "
                f"be stacked into (N, L, D). Use .layers (a list of (N, D_l) tensors) instead."
            )
        return torch.stack(self.layers, dim=1)


class FeatureStore(LookupHints):
    """A folder of extracted features (see the module docstring for the layout).

    Parameters
    ----------
    root : str or PathLike
        The store folder (default ``prh-cache/features``); created on the first save.

    Raises
    ------
    InputError
        ``root`` (or a folder above it) is a file.
    """

    def __init__(self, root: str | os.PathLike = DEFAULT_ROOT) -> None:
        self.root = Path(root).expanduser()
        for folder in (self.root, *self.root.parents):
            if folder.exists():
                if not folder.is_dir():
                    raise InputError(
                        f"the feature store {self.root}: {folder} is a file, not a folder; give --store a folder."
                    )
                break

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

    def _why_absent(self, path: Path) -> str:
        """Why the entry at ``path`` does not count as stored: nothing there, or what is broken (with its path)."""
        side = self._sidecar(path)
        for p in (path, side):
            if p.is_dir():
                return f"{p} is a folder, not a file; remove it and re-extract"
        if not path.exists() and not side.exists():
            return "no features stored"
        if not side.exists():
            return f"the features file {path} has no sidecar {side.name} (an interrupted write?)"
        if self._read_sidecar(path) is None:
            return f"the sidecar {side} is corrupt (not a prh features sidecar)"
        if not path.exists():
            return f"the sidecar {side} has no features file {path.name} (an interrupted write?)"
        if self._file_write_id(path) is None:
            return f"the features file {path} is corrupt (not a readable safetensors file)"
        return f"the features file {path} and its sidecar come from different writes (an interrupted write?)"

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

    def meta(self, dataset: PairedDataset, model: str, pool: str) -> dict | None:
        """The sidecar of a complete entry for exactly this dataset (same fingerprint), model and pooling, without
        reading (or verifying) any tensor; None when :meth:`has` would be False."""
        path = self.path(dataset, model, pool)
        meta = self._read_sidecar(path)
        if (
            not self._complete(path, meta)
            or meta.get("dataset", {}).get("fingerprint") != dataset.fingerprint()
        ):
            return None
        return meta

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
        *,
        repeats: Sequence[torch.Tensor] | None = None,
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
        repeats : sequence of torch.Tensor, optional
            R repeated measurements of the first layer, each (N, D_0), finite floats (an imported recording's
            trials or subjects; the first layer is their mean). Stored as ``repeat.000``, ...; sidecar ``repeats``: R.

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
            tensors[f"layer.{idx:03d}"] = own_storage(t)
        per_sample = dict(per_sample or {})
        for key, t in per_sample.items():
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", key):
                raise InputError(f"per-sample array name {key!r} must match [A-Za-z0-9_.-]+.")
            if not isinstance(t, torch.Tensor) or t.shape != (n,):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise InputError(f"per-sample array {key!r} must have shape (N={n},), got {shape}.")
            tensors[f"sample.{key}"] = own_storage(t)
        repeats = list(repeats or [])
        for r, t in enumerate(repeats):
            want = (n, int(layers[0].shape[1]))
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != want or not torch.is_floating_point(t):
                shape = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
                raise InputError(
                    f"repeat {r} of model {model!r} must be a float tensor of shape {want}, got {shape}."
                )
            if not bool(torch.isfinite(t).all()):
                raise ExtractionError(
                    f"repeat {r} of model {model!r} holds NaN/Inf values; nothing was saved."
                )
            tensors[f"repeat.{r:03d}"] = own_storage(t)

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
                "repeats": len(repeats),
                "dataset": {"name": dataset.name, "fingerprint": dataset.fingerprint(), "n": n},
                "prh_version": VERSION,
                "created": utc_now(),
                "write_id": write_id,
                "files": {"safetensors": path.name},
            }
        )
        sidecar.setdefault("dtype", sidecar["storage_dtype"])
        sidecar["sha256"] = tensor_digests(tensors)
        text = json.dumps(jsonable(sidecar), indent=2, sort_keys=False, allow_nan=False)

        from safetensors.torch import save_file

        header = {"format": FORMAT, "write_id": write_id, "model": model, "pool": pool}
        atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=header))
        atomic_write_text(self._sidecar(path), text + "\n")
        return path

    # -- reading ----------------------------------------------------------------------------------------------
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
            if len(messages) == 1:  # one model: its one-line message
                raise MissingFeaturesError(messages[0])
            hint = self._common_hint(missing, pool_of, dataset, dataset_name, n)
            raise MissingFeaturesError(
                f"features of {len(messages)} model(s) are missing{hint}:\n  " + "\n  ".join(messages)
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
        dtype: torch.dtype | None = torch.float32,
    ) -> StoredFeatures:
        """Read features back (float32, CPU), checking they belong to ``dataset`` (same fingerprint).

        ``dtype=None`` keeps the stored dtype (e.g. float16: half the memory of float32, for streaming).

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
        if path is None:
            reason = "no features stored"
        elif not self._complete(path, meta):
            reason = self._why_absent(path)
        elif dataset is not None and meta.get("dataset", {}).get("fingerprint") != dataset.fingerprint():
            reason = "the stored features were computed on a different version of this dataset (fingerprint mismatch)"
        if reason:
            cmd = self._extract_command(model, name, size, pool)
            where = path if path is not None else self.root
            elsewhere = self._elsewhere_hint(self._stored_elsewhere(name, model, pool, size), size, pool)
            raise MissingFeaturesError(
                f"{reason} for model {model!r} (pool {pool}) on dataset {name!r}"
                f"{f' with N={size}' if size else ''} at {where}{elsewhere}; run `{cmd}`."
            )
        assert path is not None and meta is not None
        fix = self._extract_command(model, name, size or meta.get("n"), pool, force=True)
        return self._read_verified(path, meta, model, fix, dtype)

    def _read_verified(
        self, path: Path, meta: dict, model: str, fix: str, dtype: torch.dtype | None = torch.float32
    ) -> StoredFeatures:
        """Read one entry, checking the file against its sidecar (always, from the header) and its tensors against
        the sidecar's digests and for NaN/Inf (once per file per process)."""
        from safetensors import safe_open

        def corrupt(what: str) -> MissingFeaturesError:
            return MissingFeaturesError(
                f"stored features of model {model!r} at {path}: file corrupt — {what}; re-extract with `{fix}`."
            )

        names = meta.get("layer_names")
        n = meta.get("n")
        dims = meta.get("layer_dims")
        per_sample_names = meta.get("per_sample", [])
        if (
            not isinstance(names, list)
            or not isinstance(n, int)
            or not isinstance(per_sample_names, list)
            or (dims is not None and (not isinstance(dims, list) or len(dims) != len(names)))
        ):
            raise corrupt("its sidecar is malformed (layer_names, layer_dims, n or per_sample)")
        expected = {f"layer.{i:03d}": (n, dims[i] if dims else None) for i in range(len(names))}
        expected.update({f"sample.{k}": (n,) for k in per_sample_names})
        n_repeats = meta.get("repeats", 0)
        if not isinstance(n_repeats, int) or n_repeats < 0:
            raise corrupt("its sidecar's repeats is not a count")
        expected.update({f"repeat.{r:03d}": (n, dims[0] if dims else None) for r in range(n_repeats)})
        digests = meta.get("sha256")
        stat = path.stat()
        key = (str(path.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size)
        verify = _VERIFIED.get(key) != (digests or {})  # {}: an entry without digests, checked finite
        if digests is None and str(path) not in _WARNED_UNVERIFIED:
            _WARNED_UNVERIFIED.add(str(path))
            warnings.warn(
                f"{path} (model {model!r}) was stored by a prh without checksums: it is loaded unverified; "
                f"`{fix}` rewrites it with one.",
                PrhWarning,
                stacklevel=3,
            )
        tensors: dict[str, torch.Tensor] = {}
        try:
            with (
                safe_open(str(path), framework="pt", device="cpu") as fh,
                ThreadPoolExecutor(HASH_THREADS) as pool,
            ):
                check_header(fh, expected, names, corrupt)
                if digests is not None and (not isinstance(digests, dict) or set(digests) != set(expected)):
                    raise corrupt(f"its sidecar's checksums do not name its tensors {sorted(expected)}")
                jobs: dict[str, Future] = {}
                for name in sorted(expected):  # hashing layer i overlaps reading layer i + 1
                    tensors[name] = fh.get_tensor(name)
                    if verify and digests:
                        jobs[name] = pool.submit(tensor_digest, tensors[name])
                changed = [k for k, job in jobs.items() if job.result() != digests[k]]  # type: ignore[index]
        except MissingFeaturesError:
            raise
        except Exception as err:  # noqa: BLE001 - any unreadable file is corrupt, named as such
            raise corrupt(f"it cannot be read ({type(err).__name__}: {err})") from None
        if changed:
            which = [names[int(k[6:])] if k.startswith("layer.") else k for k in sorted(changed)]
            raise corrupt(
                f"layer(s) {which} do not match their sha256 checksums (changed since they were written)"
            )
        for i, layer in enumerate(names):
            t = tensors[f"layer.{i:03d}"]
            if not torch.is_floating_point(t):
                raise corrupt(f"layer {layer!r} holds {t.dtype} values, not floats")
            if verify:
                check_finite_layer(t, model, layer, path, fix)
        if verify:
            _VERIFIED[key] = dict(digests or {})
        layers = [tensors.pop(f"layer.{i:03d}") for i in range(len(names))]
        if dtype is not None:
            layers = [layer.to(dtype) for layer in layers]
        per_sample = {k[len("sample.") :]: t for k, t in tensors.items() if k.startswith("sample.")}
        repeats = [tensors[f"repeat.{r:03d}"].to(torch.float32) for r in range(n_repeats)]
        return StoredFeatures(layers, list(names), per_sample, meta, repeats=repeats)


def tensor_digests(tensors: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """``{name: sha256}`` of every tensor (:func:`tensor_digest`), hashed in ``HASH_THREADS`` threads."""
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        return dict(zip(tensors, pool.map(tensor_digest, tensors.values())))
