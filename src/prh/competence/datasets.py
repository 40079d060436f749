"""Labelled image sets for the probes: a local folder-per-class tree and Hugging Face image-classification datasets.

Both are :class:`~prh.data.base.PairedDataset` objects (so the extractor and the feature store treat them like any
paired set) that also carry :class:`~prh.competence.labels.Labels`. Their items are in a fixed pseudo-random order
(a hash of each item's id), so that the first ``n`` items are a sample of every class rather than the first class
-- hub datasets are often sorted by label. Without a caption column their captions are a placeholder that names
neither the item nor its class; :attr:`has_captions` is then False and only vision models are probed.

The paper measures vision competence by transfer to the VTAB tasks (e.g. ``hf:clane9/vtab-1k-...`` style mirrors,
``tanganke/...``) and Places-365; any hub dataset with an image column and a class column works:
``load_labelled("hf:<repo>", split="test", label_column="label")``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING

from prh.competence.labels import Labels
from prh.data.base import FileImages, PairedDataset
from prh.errors import InputError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
#: Caption of every item of a labelled set without captions (never the class: a language model must not see it).
PLACEHOLDER_CAPTION = "an image"


def _order(key: str) -> str:
    return hashlib.sha256(f"prh-labelled:{key}".encode()).hexdigest()


class LabelledDataset(PairedDataset):
    """A paired dataset that also knows each item's class (:attr:`labels`) and whether its captions are real."""

    labels: Labels
    has_captions: bool


class ClassFolderDataset(FileImages, LabelledDataset):
    """Images in a folder-per-class tree: ``root/<class>/<image>`` (nested folders below a class are included).

    Parameters
    ----------
    root : path
        The folder whose sub-folders are the classes. Its absolute path names the dataset ``"classes:<path>"``.

    Raises
    ------
    InputError
        The folder does not exist or holds fewer than two class folders with images.
    """

    def __init__(self, root: str | Path) -> None:
        root = Path(root).expanduser()
        if not root.is_dir():
            raise InputError(
                f"--dataset {str(root)!r}: the class folder tree does not exist or is not a folder."
            )
        self.root = root.resolve()
        items = []
        for class_dir in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            for path in sorted(class_dir.rglob("*")):
                if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
                    rel = path.relative_to(self.root).as_posix()
                    items.append((_order(rel), rel, class_dir.name, path))
        classes = {c for _, _, c, _ in items}
        if len(classes) < 2:
            raise InputError(
                f"--dataset {self.root}: found {len(classes)} class folder(s) with images; a folder-per-class tree "
                f"needs at least two sub-folders (one per class) holding {', '.join(IMAGE_SUFFIXES[:4])}... files."
            )
        items.sort()
        self.files = [p for _, _, _, p in items]
        ids = [rel for _, rel, _, _ in items]
        super().__init__(f"classes:{self.root}", ids, [[PLACEHOLDER_CAPTION]] * len(ids))
        self.labels = Labels(
            tuple(ids), tuple(c for _, _, c, _ in items), "class-folder", f"folders of {self.root}"
        )
        self.has_captions = False


class HFClassificationDataset(LabelledDataset):
    """A Hugging Face image-classification dataset with its class column as labels.

    Parameters
    ----------
    repo : str
        Hub id (``owner/name``), optionally ``@revision``.
    split : str
        The split, e.g. ``"test"``.
    label_column : str
        The class column (a ``ClassLabel`` gives its names, other values are used as they are).
    text_column : str, optional
        A caption column (then language models are probed too); default: none, captions are a placeholder.
    hf_dataset : datasets.Dataset, optional
        An already loaded dataset (skips the hub; for tests).
    """

    def __init__(
        self,
        repo: str,
        split: str = "train",
        label_column: str = "label",
        text_column: str | None = None,
        hf_dataset: object = None,
    ) -> None:
        from prh.data.hf import HFDataset, load_hub_dataset

        name, _, revision = repo.partition("@")
        ds = hf_dataset if hf_dataset is not None else load_hub_dataset(name, revision or None, split)
        columns = list(getattr(ds, "column_names", []))
        if label_column not in columns:
            raise InputError(
                f"--label-column {label_column!r} is not a column of {repo!r} (split {split}); its columns are "
                f"{columns}. Pass the class column, e.g. --label-column label."
            )
        if text_column is not None and text_column not in columns:
            raise InputError(
                f"--text-column {text_column!r} is not a column of {repo!r}; its columns are {columns}."
            )
        order = sorted(range(len(ds)), key=lambda i: _order(f"{repo}:{split}:{i}"))
        ds = ds.select(order)
        feature = ds.features.get(label_column) if hasattr(ds, "features") else None
        names = getattr(feature, "names", None)
        raw = list(ds[label_column])
        values = [None if v is None else (names[int(v)] if names else str(v)) for v in raw]
        if text_column is None:
            ds = ds.add_column("prh_caption", [PLACEHOLDER_CAPTION] * len(ds))
        width = max(5, len(str(len(order) - 1)))
        ids = [f"{i:0{width}d}" for i in order]
        ds = ds.add_column("prh_id", ids)
        inner = HFDataset(
            name,
            revision or None,
            split,
            text_column=text_column or "prh_caption",
            id_column="prh_id",
            hf_dataset=ds,
            name=f"hf:{repo}:{split}:{label_column}",
        )
        self._inner = inner
        super().__init__(inner.name, inner.ids, inner.captions)
        self.labels = Labels(
            tuple(inner.ids), tuple(values), f"{label_column}", f"hub dataset {repo}, split {split}"
        )
        self.has_captions = text_column is not None

    def _image_bytes(self, i: int) -> bytes:
        return self._inner._image_bytes(i)

    def _load_image(self, i: int) -> Image.Image:
        return self._inner._load_image(i)


def load_labelled(
    name: str,
    n: int | None = None,
    split: str = "train",
    label_column: str = "label",
    text_column: str | None = None,
) -> LabelledDataset | None:
    """A labelled dataset by name, or None when ``name`` is a paired dataset without labels of its own.

    Parameters
    ----------
    name : str
        ``"classes:<path>"`` or the path of a folder-per-class tree (a folder without ``metadata.jsonl``/``.csv``
        whose sub-folders hold images), or ``"hf:<repo>[@revision]"`` with ``label_column``; anything else (e.g.
        ``"openmoji"``) gives None -- label it with :func:`~prh.competence.labels.emoji_labels` or a labels file.
    n : int, optional
        Keep the first ``n`` items (of the fixed pseudo-random order).
    split, label_column, text_column : str
        For hub datasets.
    """
    spec = name.strip()
    dataset: LabelledDataset | None = None
    if spec.startswith("classes:"):
        dataset = ClassFolderDataset(spec[len("classes:") :])
    elif spec.startswith("hf:") and spec not in ("hf:",):
        dataset = HFClassificationDataset(spec[3:], split, label_column, text_column)
    else:
        path = Path(spec).expanduser()
        if path.is_dir() and not any((path / f).is_file() for f in ("metadata.jsonl", "metadata.csv")):
            dataset = ClassFolderDataset(path)
    if dataset is None:
        return None
    if n is not None:
        subset = dataset.subset(n)
        if subset is not dataset:
            labelled = subset  # a DerivedDataset of the first n items: give it their labels
            labelled.labels = dataset.labels.aligned_to(subset.ids)  # type: ignore[attr-defined]
            labelled.has_captions = dataset.has_captions  # type: ignore[attr-defined]
            return labelled  # type: ignore[return-value]
    return dataset
