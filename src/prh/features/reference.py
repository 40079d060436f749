"""The paper's published WIT-1024 features: the catalogue, a safe fetch into the feature store, and loading back.

(Length: over 700 lines in four jobs — the catalogue, reading one file, fetching, loading back — kept in one module
while several people change it at once; the split by job is planned, along the section rules below.)

The authors of the reference code publish precomputed features of the paper's validation models on the 1,024 WIT
pairs of ``minhuh/prh`` (revision ``wit_1024``); ``platonic.Alignment`` downloads them with ``wget`` and loads them
with full unpickling. Here:

- the catalogue is data (``reference.toml`` next to this file, or ``$PRH_REFERENCE_CATALOGUE``): name, file, model
  id, modality, pooling and, where known, size and sha256 (see :func:`load_catalogue`);
- :func:`fetch_reference` downloads with :func:`prh.features.download.download` (resume, timeouts, retries,
  progress; size and sha256 checked when known), loads the file with ``torch.load(weights_only=True)`` only (a file
  that needs full unpickling is refused), checks its shape and N, and converts it into the feature store
  (safetensors + JSON sidecar with the URL, sha256 and the file's ``num_params``/``bpb``/``loss``/``mask``), bound to
  the ``minhuh/prh@wit_1024`` dataset; the downloaded file is deleted unless asked to keep it;
- :func:`load_published` reads them back for :class:`prh.Alignment`.

Stored features are named ``published/<name>`` (e.g. ``published/dinov2_l``) with the reference's pooling label
(``avg``, ``cls`` or ``none``), so they never collide with features prh extracted itself.

>>> from prh.features.reference import fetch_reference
>>> fetch_reference(["dinov2_l", "llama_7b"], "prh-cache/features")           # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from prh._torchload import safe_torch_load
from prh._validation import (
    ConfigFields,
    check_bool,
    check_field_type,
    check_table,
    read_toml_catalogue,
    suggest,
)
from prh.errors import InputError, MissingFeaturesError
from prh.features.download import DownloadOptions, check_url, download, public_url
from prh.features.store import DEFAULT_ROOT, FeatureStore, StoredFeatures

__all__ = [
    "BUILTIN",
    "ENV_CATALOGUE",
    "ENV_URL",
    "FetchConfig",
    "FetchOutcome",
    "PublishedDataset",
    "ReferenceCatalogue",
    "ReferenceFeature",
    "ReferenceFile",
    "fetch_reference",
    "load_catalogue",
    "load_published",
    "read_reference_file",
    "stored_published",
]

#: The built-in catalogue file.
BUILTIN = Path(__file__).with_name("reference.toml")
#: Environment variable naming another catalogue file (used instead of the built-in one).
ENV_CATALOGUE = "PRH_REFERENCE_CATALOGUE"
#: Environment variable overriding the catalogue's base URL (a mirror).
ENV_URL = "PRH_REFERENCE_URL"
#: Prefix of the model names of published features in the feature store.
STORE_PREFIX = "published/"
#: The fingerprint recorded when the features are bound to the dataset by name and N only.
UNKNOWN_FINGERPRINT = "unknown"
MODALITIES = ("language", "vision")
#: Derived selections besides single names: every entry, the reference's own list, the hash-verified ones, ...
SETS = ("all", "platonic", "verified", "language", "vision")
#: The ``published`` selection (the catalogue's ``published`` key) and its parts by modality.
MODEL_SETS = ("published", "published-language", "published-vision")

_FEATURE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "name": str,
    "file": str,
    "model": str,
    "modality": str,
    "pool": str,
    "listed": bool,
    "size": int,
    "sha256": str,
    "verified": bool,
    "family": str,
}
_REQUIRED = ("name", "file", "model", "modality", "pool", "verified")
_DATASET_FIELDS = {"repo": str, "revision": str, "n": int, "fingerprint": str}
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


# ---------------------------------------------------------------------------------------------------------------
# The catalogue
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReferenceFeature:
    """One published feature file (a ``[[feature]]`` table of the catalogue).

    Attributes
    ----------
    name : the reference's short name (e.g. ``"dinov2_l"``), or ``<short>_pool-none``.
    file : file name under the base URL.
    model : timm / Hugging Face id of the model.
    modality : ``"language"`` or ``"vision"``.
    pool : the reference's pooling label (``"avg"``, ``"cls"``, ``"none"``).
    listed : named in the reference's ``platonic/__init__.py``.
    size, sha256 : expected size in bytes and sha256, when known (``verified``).
    verified : size and sha256 are known (from the catalogue's ``hash_source``).
    family : the model family the paper's figures group by (e.g. ``"DINOv2"``, ``"LLaMA"``); ``""`` unknown.
    """

    name: str
    file: str
    model: str
    modality: str
    pool: str
    verified: bool
    listed: bool = False
    size: int | None = None
    sha256: str | None = None
    family: str = ""

    @property
    def store_model(self) -> str:
        """The model name of these features in the feature store: ``published/<name>``."""
        return STORE_PREFIX + self.name


@dataclass(frozen=True)
class PublishedDataset:
    """The data the published features were computed on, as the feature store sees it (name, N, fingerprint).

    ``name`` is ``"<repo>@<revision>"``, the name prh gives the paper's dataset when it loads it, so that the stored
    features sit next to those prh extracts on it. ``fingerprint`` is prh's dataset fingerprint, or
    ``"unknown"`` when the features are bound to the dataset by name and N only.
    """

    repo: str
    revision: str
    n: int
    fingerprint_value: str = UNKNOWN_FINGERPRINT

    @property
    def name(self) -> str:
        return f"{self.repo}@{self.revision}"

    def __len__(self) -> int:
        return self.n

    def fingerprint(self) -> str:
        """The fingerprint the stored features are bound to (``"unknown"``: bound by name and N)."""
        return self.fingerprint_value


@dataclass(frozen=True)
class ReferenceCatalogue:
    """The published feature files of one dataset, read from a catalogue TOML file (see ``reference.toml``)."""

    base_url: str
    hash_source: str
    dataset: PublishedDataset
    features: dict[str, ReferenceFeature] = field(default_factory=dict)
    path: str = ""
    #: the entries of the ``published`` model set (the catalogue's ``published`` key; default every entry)
    published: tuple[str, ...] = ()

    def names(self) -> list[str]:
        """Every entry's name, in catalogue order."""
        return list(self.features)

    def members(self, set_name: str) -> list[str]:
        """The names in one derived selection: ``all``, ``platonic`` (the reference's list), ``verified``,
        ``language`` or ``vision``."""
        keep = {
            "all": lambda f: True,
            "platonic": lambda f: f.listed,
            "verified": lambda f: f.verified,
            "language": lambda f: f.modality == "language",
            "vision": lambda f: f.modality == "vision",
        }[set_name]
        return [name for name, f in self.features.items() if keep(f)]

    def select(self, names: str | Sequence[str], argument: str = "names") -> list[ReferenceFeature]:
        """Entries by name or selection (a list, or one comma-separated string; ``"all"`` is every entry), in the
        given order without repeats.

        Raises
        ------
        InputError
            An unknown name (with the closest ones), or nothing selected.
        """
        if isinstance(names, str):
            items = [part.strip() for part in names.split(",") if part.strip()]
        elif isinstance(names, (list, tuple)) and all(isinstance(x, str) for x in names):
            items = [x.strip() for x in names]
        else:
            raise InputError(
                f"{argument}={names!r} must be a list of published feature names or one comma-separated string, "
                f"e.g. ['dinov2_l', 'llama_7b'] (`prh fetch-reference --list` shows them)."
            )
        out: list[str] = []
        for item in items:
            item = item.removeprefix(STORE_PREFIX)
            if item in SETS:
                chosen = self.members(item)
            elif item in MODEL_SETS:  # the model sets of prh.features.published
                modality = item.partition("-")[2]
                chosen = [n for n in self.published if not modality or self.features[n].modality == modality]
            elif item in self.features:
                chosen = [item]
            else:
                raise InputError(
                    f"{argument}: {item!r} is not a published feature file of {self.dataset.name}."
                    f"{suggest(item, [*self.features, *SETS])} `prh fetch-reference --list` shows all "
                    f"{len(self.features)}; selections: {', '.join(SETS)}."
                )
            out.extend(name for name in chosen if name not in out)
        if not out:
            raise InputError(f"{argument} is empty; name at least one published feature file, or 'all'.")
        return [self.features[name] for name in out]

    def url(self, entry: ReferenceFeature, base_url: str | None = None) -> str:
        """The download URL of ``entry``: ``base_url`` (default: :func:`resolve_base_url`) + file name."""
        return resolve_base_url(self, base_url) + entry.file


def _feature(table: object, where: str) -> ReferenceFeature:
    at = check_table(table, _FEATURE_FIELDS, _REQUIRED, where, "feature")
    if not _NAME.fullmatch(table["name"]) or table["name"] in SETS + MODEL_SETS:
        raise InputError(
            f"{at}: name must be letters, digits and _.+- (starting with a letter or digit) and not one of {SETS}."
        )
    if not _NAME.fullmatch(
        table["file"]
    ):  # also no '?', '#', '%', '\\' that would change the URL or the path
        raise InputError(
            f"{at}: file={table['file']!r} must be a plain file name: letters, digits and _.+- (starting with a "
            f"letter or digit; no folders)."
        )
    if table["modality"] not in MODALITIES:
        raise InputError(f"{at}: modality={table['modality']!r} must be one of {list(MODALITIES)}.")
    if not _NAME.fullmatch(table["pool"]):
        raise InputError(f"{at}: pool={table['pool']!r} must be a short label such as 'avg' or 'cls'.")
    has_hash = "sha256" in table and "size" in table
    if table["verified"] != has_hash or (("sha256" in table) != ("size" in table)):
        raise InputError(
            f"{at}: verified = true needs both size and sha256, and an entry with them must say verified = true."
        )
    if has_hash:
        if not _SHA256.fullmatch(table["sha256"]):
            raise InputError(f"{at}: sha256 must be 64 lower-case hex digits, got {table['sha256']!r}.")
        if table["size"] <= 0:
            raise InputError(f"{at}: size={table['size']} must be a positive number of bytes.")
    return ReferenceFeature(**table)


def load_catalogue(path: str | os.PathLike | None = None) -> ReferenceCatalogue:
    """Read and check a catalogue of published features.

    Parameters
    ----------
    path : the TOML file; default ``$PRH_REFERENCE_CATALOGUE`` when set, else the built-in ``reference.toml``.

    Raises
    ------
    InputError
        Missing file, invalid TOML, an unknown or missing field, a duplicate name; the message names the file,
        the entry and the field.
    """
    if path is None:
        path = os.environ.get(ENV_CATALOGUE) or BUILTIN
    path = Path(path)
    where = f"reference catalogue {str(path)!r}"
    data = read_toml_catalogue(
        path,
        "reference catalogue",
        arrays=("feature",),
        tables=("dataset",),
        keys=("base_url", "hash_source", "published"),
        hint=f" ({ENV_CATALOGUE})",
    )
    for key in ("base_url", "dataset", "feature"):
        if key not in data:
            raise InputError(f"{where} lacks `{key}`.")
    check_field_type(data["base_url"], str, where, "base_url")
    check_field_type(data.get("hash_source", ""), str, where, "hash_source")
    ds = data["dataset"]
    if not isinstance(ds, dict) or sorted(ds) != sorted(_DATASET_FIELDS):
        raise InputError(f"{where}: [dataset] must have exactly the fields {list(_DATASET_FIELDS)}.")
    for key, want in _DATASET_FIELDS.items():
        check_field_type(ds[key], want, f"{where} [dataset]", key)
    if ds["n"] < 1:
        raise InputError(f"{where} [dataset]: n={ds['n']} must be a positive number of items.")
    features: dict[str, ReferenceFeature] = {}
    for table in data["feature"]:
        entry = _feature(table, where)
        if entry.name in features:
            raise InputError(f"{where}: feature name {entry.name!r} appears twice; names must be unique.")
        features[entry.name] = entry
    dataset = PublishedDataset(ds["repo"], ds["revision"], ds["n"], ds["fingerprint"] or UNKNOWN_FINGERPRINT)
    _check_base_url(data["base_url"], f"{where}: base_url")
    catalogue = ReferenceCatalogue(
        data["base_url"], data.get("hash_source", ""), dataset, features, str(path)
    )
    chosen = data.get("published", "all")
    if not isinstance(chosen, (str, list)):
        raise InputError(f"{where}: published={chosen!r} must be a selection name or a list of entry names.")
    published = tuple(e.name for e in catalogue.select(chosen, f"{where}: published"))
    return ReferenceCatalogue(
        catalogue.base_url, catalogue.hash_source, dataset, features, str(path), published
    )


def _check_base_url(url: str, where: str) -> str:
    check_url(url, where)  # a well-formed http(s) URL; shown without credentials or query
    return url if url.endswith("/") else url + "/"


def resolve_base_url(catalogue: ReferenceCatalogue, base_url: str | None = None) -> str:
    """The folder URL to download from: ``base_url`` when given, else ``$PRH_REFERENCE_URL``, else the
    catalogue's (the authors' server). Always ends with ``/``."""
    if base_url:
        return _check_base_url(base_url, "base_url")
    env = os.environ.get(ENV_URL)
    if env:
        return _check_base_url(env, ENV_URL)
    return _check_base_url(catalogue.base_url, "base_url")


# ---------------------------------------------------------------------------------------------------------------
# Reading one file of the reference's format, without unpickling code
# ---------------------------------------------------------------------------------------------------------------
@dataclass
class ReferenceFile:
    """The content of one published features file, checked.

    Attributes
    ----------
    layers : L float tensors of shape (N, D_l), in the file's dtype (e.g. float16 for the language models).
    layout : ``"tensor"`` (the file's ``feats`` was one (N, L, D) or (N, D) tensor) or ``"list"`` (a list of
        per-layer tensors; the reference then clamps outliers layer by layer).
    per_sample : (N,) tensors derived from the file: ``n_tokens`` (from ``mask``), ``bpb`` when per item.
    fields : the other entries as JSON values: ``num_params``, ``bpb``, ``loss`` (numbers), ``mask`` (its shape and
        dtype), anything else by type and shape.
    """

    layers: list[torch.Tensor]
    layout: str
    per_sample: dict[str, torch.Tensor]
    fields: dict[str, Any]


def _safe_load(path: Path) -> object:
    """``torch.load(weights_only=True)``; a file needing full unpickling is refused naming what it references,
    any other failure is "not a readable torch.save file" (torch's advice to unpickle fully is never passed on)."""
    return safe_torch_load(path, "torch.save file")


def _number(value: object) -> float | int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return value
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_complex():
        item = value.item()
        return item if isinstance(item, (int, float)) and not isinstance(item, bool) else None
    return None


def read_reference_file(path: str | os.PathLike, n: int | None = None) -> ReferenceFile:
    """Load one features file of the reference's format (``torch.save`` of a dict) without unpickling code.

    Parameters
    ----------
    path : the ``.pt`` file.
    n : expected number of items (rows), e.g. 1024 for WIT-1024; None: not checked.

    Returns
    -------
    :class:`ReferenceFile` with the layers (N, D_l), the ``feats`` layout and the other fields.

    Raises
    ------
    InputError
        The file needs full unpickling (refused), is not a torch file, is not a dict with ``feats``, or its
        ``feats`` are not float tensors of shape (N, L, D) / (N, D) / a list of (N, D_l) with the expected N, or hold
        NaN/Inf. The message names the file.
    """
    path = Path(path)
    obj = _safe_load(path)
    if not isinstance(obj, dict) or "feats" not in obj:
        keys = sorted(map(str, obj)) if isinstance(obj, dict) else type(obj).__name__
        raise InputError(
            f"{path} is not a features file of the reference's format: expected a dict with 'feats' "
            f"(plus 'num_params', ...), found {keys}."
        )
    feats = obj["feats"]
    if isinstance(feats, torch.Tensor):
        layout = "tensor"
        if feats.ndim == 3:
            layers = list(feats.unbind(dim=1))
        elif feats.ndim == 2:
            layers = [feats]
        else:
            raise InputError(
                f"{path}: 'feats' must have shape (N, L, D) or (N, D), got {tuple(feats.shape)}."
            )
    elif isinstance(feats, (list, tuple)) and feats and all(isinstance(t, torch.Tensor) for t in feats):
        layout = "list"
        layers = list(feats)
        for i, layer in enumerate(layers):
            if layer.ndim != 2:
                raise InputError(f"{path}: 'feats'[{i}] must have shape (N, D), got {tuple(layer.shape)}.")
    else:
        raise InputError(
            f"{path}: 'feats' must be a tensor (N, L, D) or a non-empty list of (N, D) tensors, got "
            f"{type(feats).__name__}."
        )
    rows = {int(layer.shape[0]) for layer in layers}
    if len(rows) != 1:
        raise InputError(f"{path}: the layers of 'feats' have different numbers of rows {sorted(rows)}.")
    rows_n = rows.pop()
    if n is not None and rows_n != n:
        raise InputError(
            f"{path}: 'feats' has N={rows_n} rows but the dataset has N={n} items; it was computed on other data."
        )
    for i, layer in enumerate(layers):
        if not torch.is_floating_point(layer):
            raise InputError(f"{path}: 'feats' layer {i} must hold floats, got {layer.dtype}.")
        if layer.shape[1] < 1:
            raise InputError(f"{path}: 'feats' layer {i} has no features (D = 0).")
        if not bool(torch.isfinite(layer).all()):
            bad = int((~torch.isfinite(layer)).sum())
            raise InputError(f"{path}: 'feats' layer {i} holds {bad} NaN/Inf value(s); the file is unusable.")

    fields: dict[str, Any] = {}
    per_sample: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if key == "feats":
            continue
        key = str(key)
        number = _number(value)
        if number is not None:
            fields[key] = number
        elif isinstance(value, torch.Tensor):
            fields[key] = {"shape": list(value.shape), "dtype": str(value.dtype).replace("torch.", "")}
            if key == "mask" and value.ndim == 2 and value.shape[0] == rows_n:
                per_sample["n_tokens"] = value.to(torch.int64).sum(dim=1)
                fields[key]["per_sample"] = "n_tokens"
            elif value.ndim == 1 and value.shape[0] == rows_n and re.fullmatch(r"[A-Za-z0-9_.-]+", key):
                per_sample[key] = value.detach().clone()
                fields[key]["per_sample"] = key
        elif isinstance(value, str) and len(value) <= 1000:
            fields[key] = value
        else:
            fields[key] = {"type": type(value).__name__}
    return ReferenceFile(layers, layout, per_sample, fields)


# ---------------------------------------------------------------------------------------------------------------
# Fetching into the feature store
# ---------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class FetchConfig(ConfigFields):
    """How :func:`fetch_reference` fetches (validated on construction; a bad field is an InputError naming it).

    Attributes
    ----------
    base_url : folder URL to download from (a mirror); default ``$PRH_REFERENCE_URL``, else the catalogue's.
    verify : check size and sha256 of the verified entries (default True). ``False`` only records the digest: use
        it for a mirror you trust that serves re-exported files (the file is still loaded without unpickling).
    keep_download : keep the downloaded ``.pt`` file next to the store (``<store>/.downloads``) after conversion.
    force : download and convert again even when the store has the features.
    download_dir : where downloads (and partial downloads, for resuming) go; default ``<store>/.downloads``.
    download : :class:`~prh.features.download.DownloadOptions` (timeout, retries, backoff, progress, chunk size).
    """

    base_url: str | None = None
    verify: bool = True
    keep_download: bool = False
    force: bool = False
    download_dir: str | None = None
    download: DownloadOptions = field(default_factory=DownloadOptions)

    def __post_init__(self) -> None:
        if self.base_url is not None:
            if not isinstance(self.base_url, str):
                raise InputError(f"base_url={self.base_url!r} must be a URL string.")
            _check_base_url(self.base_url, "base_url")
        for name in ("verify", "keep_download", "force"):
            check_bool(getattr(self, name), name)
        if self.download_dir is not None and not isinstance(self.download_dir, (str, os.PathLike)):
            raise InputError(f"download_dir={self.download_dir!r} must be a folder path.")
        object.__setattr__(self, "download", DownloadOptions.coerce(self.download, "download"))


@dataclass(frozen=True)
class FetchOutcome:
    """What :func:`fetch_reference` did for one entry: ``status`` is ``"fetched"`` or ``"present"`` (already in
    the store); ``path`` is the store's safetensors file; ``sha256``/``size`` describe the downloaded file;
    ``verified`` says whether they matched the catalogue."""

    name: str
    status: str
    path: Path
    sha256: str | None
    size: int | None
    verified: bool


def _binding(catalogue: ReferenceCatalogue, dataset: object) -> PublishedDataset:
    """The dataset the stored features are bound to: ``dataset``'s fingerprint when given (checked), else the
    catalogue's (``"unknown"`` when it has none)."""
    expected = catalogue.dataset
    if dataset is None:
        return expected
    if not callable(getattr(dataset, "fingerprint", None)) or not hasattr(dataset, "__len__"):
        raise InputError(
            f"dataset must be the {expected.name} dataset (prh.data.load_dataset('{expected.revision}')), got "
            f"{type(dataset).__name__}."
        )
    if len(dataset) != expected.n:
        raise InputError(
            f"dataset has N={len(dataset)} items, but the published features were computed on the {expected.n} "
            f"items of {expected.name}; pass that dataset (all of it)."
        )
    fingerprint = dataset.fingerprint()
    if expected.fingerprint() != UNKNOWN_FINGERPRINT and fingerprint != expected.fingerprint():
        raise InputError(
            f"dataset has fingerprint {fingerprint[:16]}..., but the published features were computed on "
            f"{expected.name} with fingerprint {expected.fingerprint()[:16]}...: not the same data (another revision "
            f"of the dataset?)."
        )
    return PublishedDataset(expected.repo, expected.revision, expected.n, fingerprint)


def stored_published(store: FeatureStore, catalogue: ReferenceCatalogue) -> dict[str, dict]:
    """``{name: sidecar}`` of every catalogue entry that is in ``store`` (complete), whatever its binding."""
    ds = catalogue.dataset
    by_model = {f.store_model: f for f in catalogue.features.values()}
    out = {}
    for meta in store.entries():
        entry = by_model.get(meta.get("model"))
        data = meta.get("dataset") or {}
        if (
            entry is not None
            and meta.get("pool") == entry.pool
            and data.get("name") == ds.name
            and data.get("n") == ds.n
        ):
            out[entry.name] = meta
    return out


def _convert(
    path: Path,
    entry: ReferenceFeature,
    store: FeatureStore,
    binding: PublishedDataset,
    provenance: dict,
) -> Path:
    content = read_reference_file(path, n=binding.n)
    fields = content.fields
    meta: dict[str, Any] = {
        "source": "published",
        "adapter": "published-features",
        "model_id": entry.model,
        "modality": entry.modality,
        "dataset_binding": "name" if binding.fingerprint() == UNKNOWN_FINGERPRINT else "fingerprint",
        "published": {
            **provenance,
            "name": entry.name,
            "file": entry.file,
            "pool": entry.pool,
            "feats_layout": content.layout,
            "feats_dtype": str(content.layers[0].dtype).replace("torch.", ""),
            "fields": fields,
        },
    }
    if isinstance(fields.get("num_params"), (int, float)):
        meta["params"] = fields["num_params"]
    if isinstance(fields.get("bpb"), (int, float)):
        meta["bits_per_byte"] = fields["bpb"]
    prefix = "hidden_states" if entry.modality == "language" else "block"
    names = [f"{prefix}.{i}" for i in range(len(content.layers))]
    return store.save(binding, entry.store_model, entry.pool, content.layers, names, content.per_sample, meta)


def fetch_reference(
    names: str | Sequence[str],
    store: str | os.PathLike | FeatureStore = DEFAULT_ROOT,
    config: FetchConfig | dict | None = None,
    dataset: object = None,
    catalogue: ReferenceCatalogue | None = None,
) -> list[FetchOutcome]:
    """Download published features and convert them into the feature store; what is stored already is skipped.

    Parameters
    ----------
    names : entry names and/or selections (``"all"``, ``"platonic"``, ``"verified"``, ``"language"``, ``"vision"``),
        a list or one comma-separated string, e.g. ``["dinov2_l", "llama_7b"]``.
    store : the feature store (folder or :class:`~prh.features.store.FeatureStore`), as in ``prh align --store``.
    config : :class:`FetchConfig` (base URL, verification, keeping the download, retries, ...).
    dataset : the ``minhuh/prh@wit_1024`` dataset itself (``prh.data.load_dataset("wit_1024")``), to bind the
        features to its fingerprint; default: bound to the catalogue's fingerprint, or by name and N when unknown.
    catalogue : default :func:`load_catalogue` (``$PRH_REFERENCE_CATALOGUE`` or the built-in one).

    Returns
    -------
    One :class:`FetchOutcome` per entry, in order.

    Raises
    ------
    InputError
        An unknown name; a file that needs full unpickling (refused: nothing is stored and the file is deleted),
        is not of the reference's format, or has another N.
    DownloadError
        The download failed (a partial file is kept for a resume; the message says where) or the file has another
        size or sha256 than the catalogue records (deleted; nothing is stored).
    """
    catalogue = catalogue or load_catalogue()
    config = FetchConfig.coerce(config, "config")
    entries = catalogue.select(names)
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    binding = _binding(catalogue, dataset)
    base_url = resolve_base_url(catalogue, config.base_url)
    mirror_advice = (  # the download errors' advice when base_url is already a mirror
        f"check that {public_url(base_url)} holds the published files, or leave --base-url and "
        f"PRH_REFERENCE_URL out to use the authors' server"
    )
    folder = Path(config.download_dir) if config.download_dir else store.root / ".downloads"
    present = stored_published(store, catalogue) if not config.force else {}
    outcomes = []
    for entry in entries:
        meta = present.get(entry.name)
        fingerprint = (meta or {}).get("dataset", {}).get("fingerprint")
        if meta is not None and binding.fingerprint() in (UNKNOWN_FINGERPRINT, fingerprint):
            info = meta.get("published") or {}
            outcomes.append(
                FetchOutcome(
                    entry.name,
                    "present",
                    store.path(binding, entry.store_model, entry.pool),
                    info.get("sha256"),
                    info.get("size"),
                    bool(info.get("verified")),
                )
            )
            continue
        url = base_url + entry.file
        check = config.verify and entry.verified
        result = download(
            url,
            folder / entry.file,
            size=entry.size if check else None,
            sha256=entry.sha256 if check else None,
            options=config.download,
            advice=None if base_url == resolve_base_url(catalogue, catalogue.base_url) else mirror_advice,
        )
        verified = entry.verified and result.sha256 == entry.sha256 and result.size == entry.size
        provenance = {
            "url": public_url(url),  # never credentials or a query string on disk
            "sha256": result.sha256,
            "size": result.size,
            "verified": verified,
            "hash_source": catalogue.hash_source if entry.verified else None,
            "catalogue_sha256": entry.sha256,
        }
        try:
            path = _convert(result.path, entry, store, binding, provenance)
        except InputError:
            result.path.unlink(missing_ok=True)  # refused or unusable: never keep it around
            raise
        if not config.keep_download:
            result.path.unlink(missing_ok=True)
        outcomes.append(FetchOutcome(entry.name, "fetched", path, result.sha256, result.size, verified))
    return outcomes


# ---------------------------------------------------------------------------------------------------------------
# Loading back
# ---------------------------------------------------------------------------------------------------------------
def load_published(
    names: str | Sequence[str],
    store: str | os.PathLike | FeatureStore = DEFAULT_ROOT,
    catalogue: ReferenceCatalogue | None = None,
) -> dict[str, StoredFeatures]:
    """Read fetched published features back from the store (float32, CPU), ``{name: features}`` in order.

    The sidecar's ``published`` record says how the file was laid out (``feats_layout``), its URL, sha256 and
    fields; ``dataset`` says what it is bound to.

    Raises
    ------
    MissingFeaturesError
        Entries not fetched yet (all listed, with the ``prh fetch-reference`` command that fetches them).
    InputError
        The entries were bound to different fingerprints of the dataset (fetched against different versions).
    """
    catalogue = catalogue or load_catalogue()
    entries = catalogue.select(names, "models")
    store = store if isinstance(store, FeatureStore) else FeatureStore(store)
    present = stored_published(store, catalogue)
    missing = [e.name for e in entries if e.name not in present]
    if missing:
        where = "" if str(store.root) == DEFAULT_ROOT else f" --store {store.root}"
        raise MissingFeaturesError(
            f"published features of {', '.join(missing)} are not in the feature store {store.root}; run "
            f"`prh fetch-reference {','.join(missing)}{where}` (or let prh.Alignment fetch them)."
        )
    fingerprints = {
        present[e.name]["dataset"].get("fingerprint")
        for e in entries
        if present[e.name]["dataset"].get("fingerprint") not in (None, UNKNOWN_FINGERPRINT)
    }
    if len(fingerprints) > 1:
        raise InputError(
            f"the published features {', '.join(e.name for e in entries)} were bound to different versions of "
            f"{catalogue.dataset.name} (fingerprints {sorted(f[:12] for f in fingerprints)}); fetch them again "
            f"together with `prh fetch-reference ... --force`."
        )
    ds = catalogue.dataset
    return {e.name: store.load(None, e.store_model, e.pool, dataset_name=ds.name, n=ds.n) for e in entries}
