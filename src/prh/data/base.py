"""The paired image-caption dataset every extractor reads: ids, captions and lazily loaded images.

A :class:`PairedDataset` is a fixed, ordered list of N items. Item ``i`` has a unique string id, one or more
non-empty captions and one image that is decoded only when :meth:`PairedDataset.image` is called. Concrete sources
(OpenMoji, a Hugging Face dataset, a local folder) subclass it and implement two hooks: ``_load_image`` and
``_image_bytes``.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

from prh._validation import check_int
from prh.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path

    from PIL import Image

#: Version tag mixed into every fingerprint; bump it when the hashing scheme changes.
FINGERPRINT_SCHEME = b"prh-dataset-fingerprint-v1"


def normalize_captions(raw: object, item_id: str) -> list[str]:
    """Turn one item's caption field (a string or a list of strings) into a non-empty list of non-empty strings.

    Raises
    ------
    InputError
        When the field is missing, not text, empty, or holds an empty/whitespace-only caption. The message names
        the item id.
    """
    if isinstance(raw, str):
        values: list[object] = [raw]
    elif isinstance(raw, (list, tuple)):
        values = list(raw)
    elif raw is None:
        values = []
    else:
        raise InputError(
            f"item {item_id!r}: a caption must be a string or a list of strings, got {type(raw).__name__}."
        )
    if not values:
        raise InputError(f"item {item_id!r} has no caption; every item needs at least one non-empty caption.")
    out: list[str] = []
    for j, value in enumerate(values):
        if not isinstance(value, str):
            raise InputError(
                f"item {item_id!r}: caption {j} must be a string, got {type(value).__name__} ({value!r})."
            )
        if not value.strip():
            raise InputError(
                f"item {item_id!r}: caption {j} is empty; every caption must contain text "
                f"(fix or remove the item in the metadata)."
            )
        out.append(value)
    return out


def _validate(ids: Sequence[str], captions: Sequence[Sequence[str]]) -> tuple[list[str], list[list[str]]]:
    ids = [str(i) for i in ids]
    if len(ids) != len(captions):
        raise InputError(f"ids has {len(ids)} entries but captions has {len(captions)}; they must match.")
    seen: set[str] = set()
    for item_id in ids:
        if item_id in seen:
            raise InputError(f"item id {item_id!r} appears more than once; ids must be unique.")
        seen.add(item_id)
    caps = [normalize_captions(c, i) for i, c in zip(ids, captions)]
    return ids, caps


class PairedDataset:
    """An ordered set of N (image, captions) pairs with lazily loaded images.

    Attributes
    ----------
    name : str
        Stable name of the source, e.g. ``"openmoji"``, ``"minhuh/prh@wit_1024"`` or ``"folder:/abs/path"``;
        :func:`prh.data.load_dataset` accepts it back.
    ids : list of str
        Length N, unique, in a deterministic order.
    captions : list of list of str
        Length N; item ``i`` has ``len(captions[i]) >= 1`` non-empty captions.

    Notes
    -----
    Subclasses implement ``_load_image(i) -> PIL.Image`` and ``_image_bytes(i) -> bytes`` (the bytes that
    identify the image: the raw file, or the rendered pixels). Images are never held in memory by the dataset.
    """

    name: str
    ids: list[str]
    captions: list[list[str]]
    #: One line crediting the source (authors, licence) for reports built on this data; None: nothing to credit.
    credit: str | None = None
    #: True when the item ids are Unicode emoji code points in hex (``"1F436"``): the emoji annotations (caption
    #: variants) and the Unicode emoji groups (competence labels) apply to the items.
    emoji_ids: bool = False

    def __init__(self, name: str, ids: Sequence[str], captions: Sequence[Sequence[str]]) -> None:
        self.name = str(name)
        self.ids, self.captions = _validate(ids, captions)
        self._fingerprint: str | None = None

    # -- hooks for subclasses -------------------------------------------------------------------------------
    def _load_image(self, i: int) -> Image.Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def _image_bytes(self, i: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _image_digest(self, i: int) -> str:
        """sha256 hex of the bytes that identify image ``i`` (subclasses may cache it)."""
        return hashlib.sha256(self._image_bytes(i)).hexdigest()

    # -- public API -------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.ids)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)})"

    def _check_index(self, i: int) -> int:
        if isinstance(i, bool) or not isinstance(i, int):
            try:
                i = int(i)  # numpy / torch integers
            except (TypeError, ValueError):
                raise InputError(f"item index must be an integer, got {i!r}.") from None
        if not -len(self) <= i < len(self):
            raise InputError(
                f"item index {i} is out of range for dataset {self.name!r} with N={len(self)} items."
            )
        return i % len(self)

    def image(self, i: int) -> Image.Image:
        """Load image ``i`` as an RGB ``PIL.Image`` (decoded now, not cached).

        Raises
        ------
        InputError
            If the image is missing, unreadable or corrupt; the message names the item id.
        """
        i = self._check_index(i)
        img = self._load_image(i)
        return to_rgb(img)

    def text(self, i: int, caption_index: int = 0) -> str:
        """Caption number ``caption_index`` of item ``i``."""
        i = self._check_index(i)
        caps = self.captions[i]
        caption_index = check_int(caption_index, "caption_index", minimum=0, hint="which caption of the item")
        if caption_index >= len(caps):
            raise InputError(
                f"item {self.ids[i]!r} has {len(caps)} caption(s); caption_index={caption_index} does not exist "
                f"(use 0..{len(caps) - 1})."
            )
        return caps[caption_index]

    def texts(self, caption_index: int = 0) -> list[str]:
        """Caption number ``caption_index`` of every item, in dataset order (length N)."""
        return [self.text(i, caption_index) for i in range(len(self))]

    def fingerprint(self) -> str:
        """sha256 hex digest over ids, captions and image bytes (computed once, then cached).

        Any change of an id, of the order, of one caption or of one image's bytes changes the fingerprint; the
        dataset's ``name`` does not enter it.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(FINGERPRINT_SCHEME)
            h.update(len(self).to_bytes(8, "little"))
            for i, item_id in enumerate(self.ids):
                _update_str(h, item_id)
                h.update(len(self.captions[i]).to_bytes(4, "little"))
                for caption in self.captions[i]:
                    _update_str(h, caption)
                h.update(bytes.fromhex(self._image_digest(i)))
            self._fingerprint = h.hexdigest()
            self._fingerprint_done()
        return self._fingerprint

    def _fingerprint_done(self) -> None:
        """Hook run after a fingerprint was computed (e.g. to persist per-image digests)."""

    def subset(self, n: int) -> PairedDataset:
        """The first ``n`` items (same name, same images and captions)."""
        n = check_int(n, "n", minimum=1, hint="a number of items")
        if n > len(self):
            raise InputError(
                f"n={n} is larger than dataset {self.name!r}, which has {len(self)} items; use --n {len(self)} "
                f"or less."
            )
        if n == len(self):
            return self
        return DerivedDataset(self, list(range(n)), [list(c) for c in self.captions[:n]], self.name)

    def with_captions(self, captions: list[list[str]], name: str) -> PairedDataset:
        """The same images and ids with other captions (e.g. shuffled, for a control), under a new ``name``."""
        if len(captions) != len(self):
            raise InputError(f"captions has {len(captions)} entries; the dataset has N={len(self)} items.")
        if name == self.name:
            raise InputError(
                f"name={name!r} is the name of the original dataset; give the re-captioned dataset its own name "
                f"so that its features are stored separately."
            )
        return DerivedDataset(self, list(range(len(self))), captions, name)


class DerivedDataset(PairedDataset):
    """A view on a parent dataset: selected items, possibly other captions and another name."""

    def __init__(
        self, parent: PairedDataset, indices: list[int], captions: Sequence[Sequence[str]], name: str
    ):
        self.parent = parent
        self.indices = list(indices)
        super().__init__(name, [parent.ids[j] for j in self.indices], captions)

    @property
    def credit(self) -> str | None:  # type: ignore[override]
        """The parent's credit line (a view shows the parent's images)."""
        return self.parent.credit

    @property
    def emoji_ids(self) -> bool:  # type: ignore[override]
        """The parent's: a view keeps the parent's ids."""
        return self.parent.emoji_ids

    def _load_image(self, i: int) -> Image.Image:
        return self.parent._load_image(self.indices[i])

    def _image_bytes(self, i: int) -> bytes:
        return self.parent._image_bytes(self.indices[i])

    def _image_digest(self, i: int) -> str:
        return self.parent._image_digest(self.indices[i])

    def _fingerprint_done(self) -> None:
        self.parent._fingerprint_done()


def _update_str(h: hashlib._Hash, s: str) -> None:
    data = s.encode("utf-8")
    h.update(len(data).to_bytes(8, "little"))
    h.update(data)


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert to RGB; transparent pixels are composited onto white (emoji, logos) rather than black."""
    from PIL import Image

    if img.mode == "RGB":
        return img
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def decode_image(data: bytes, item_id: str, source: str = "") -> Image.Image:
    """Decode image bytes fully (so truncated files fail now), raising InputError naming the item."""
    from PIL import Image, UnidentifiedImageError

    where = f" ({source})" if source else ""
    try:
        img = Image.open(io.BytesIO(data))
        img.load()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise InputError(
            f"item {item_id!r}{where}: the image cannot be read ({type(err).__name__}: {err}); "
            f"replace the file or remove the item."
        ) from err
    return img


class FileImages:
    """Mixin for a dataset whose item ``i`` is the image file ``self.files[i]`` (a local folder of images).

    Put it before :class:`PairedDataset` in the bases; it supplies the two image hooks, with one clear
    :class:`~prh.errors.InputError` naming the item and the file when the file cannot be read or decoded.
    """

    files: list[Path]
    ids: list[str]

    def _image_bytes(self, i: int) -> bytes:
        try:
            return self.files[i].read_bytes()
        except OSError as err:
            raise InputError(f"item {self.ids[i]!r}: cannot read {str(self.files[i])!r} ({err}).") from err

    def _load_image(self, i: int) -> Image.Image:
        return decode_image(self._image_bytes(i), self.ids[i], str(self.files[i]))
