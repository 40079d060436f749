"""Pixel statistics of the colours experiment: natural images quantised to the vocabulary in CIELAB, pixel-pair
co-occurrence counts within a radius, and their pointwise mutual information."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from prh.errors import InputError
from prh.experiments._color_science import srgb_to_lab
from prh.experiments.base import require

#: Photographs that scikit-image ships inside its wheel (read from ``skimage.data.data_dir``, never downloaded).
SKIMAGE_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "retina.jpg",
    "ihc.png",
)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
#: Longest image side used for the co-occurrence counts (larger images are downscaled first).
MAX_SIDE = 512


def _as_rgb_array(img: Any) -> np.ndarray:
    from PIL import Image

    if not isinstance(img, Image.Image):
        img = Image.fromarray(np.asarray(img))
    img = img.convert("RGB")
    scale = MAX_SIDE / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.size[0] * scale)), max(1, round(img.size[1] * scale))), Image.BOX)
    return np.asarray(img, dtype=np.uint8)


def load_images(source: str | None, folder: str | None, max_images: int) -> list[tuple[str, np.ndarray]]:
    """Natural images for the co-occurrence counts, as ``(name, (H, W, 3) uint8)``.

    ``source``: ``"skimage"`` (the photographs of :data:`SKIMAGE_PHOTOS`), ``"none"`` or ``None`` (none) or any name
    :func:`prh.data.load_dataset` accepts (its first ``max_images`` images); ``folder``: every image file under it.
    """
    from PIL import Image

    out: list[tuple[str, np.ndarray]] = []
    if source == "skimage":
        data = require("skimage.data", "scikit-image")
        root = Path(data.data_dir)
        for name in SKIMAGE_PHOTOS:
            if (root / name).is_file():
                with Image.open(root / name) as img:
                    out.append((f"skimage:{name}", _as_rgb_array(img)))
    elif source not in (None, "none"):
        from prh.data import load_dataset

        dataset = load_dataset(source)
        for i in range(min(len(dataset), max_images)):
            out.append((f"{dataset.name}:{dataset.ids[i]}", _as_rgb_array(dataset.image(i))))
    if folder is not None:
        root = Path(folder).expanduser()
        if not root.is_dir():
            raise InputError(f"--images {folder!r} is not a folder; give a folder of image files.")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not files:
            raise InputError(f"--images {folder!r} holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        for path in files:
            try:
                with Image.open(path) as img:
                    out.append((str(path), _as_rgb_array(img)))
            except OSError as err:
                raise InputError(
                    f"image {str(path)!r} cannot be read ({err}); remove or replace it."
                ) from err
    return out


def quantize(image: np.ndarray, palette_lab: np.ndarray) -> np.ndarray:
    """(H, W) index of the nearest palette colour (Euclidean in CIELAB) of every pixel of an (H, W, 3) image."""
    from scipy.spatial import cKDTree

    lab = srgb_to_lab(image).reshape(-1, 3)
    _, idx = cKDTree(palette_lab).query(lab)
    return idx.reshape(image.shape[:2]).astype(np.int64)


def cooccurrence(
    index_maps: list[np.ndarray], n_colors: int, radius: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel counts and symmetric co-occurrence counts of colour-index maps.

    Every unordered pair of distinct pixels p, q of one image with max(|Δrow|, |Δcol|) <= ``radius`` adds 1 to
    C[c(p), c(q)] and 1 to C[c(q), c(p)] (2 on the diagonal when both have the same colour).

    Returns
    -------
    pixels : (V,) int64 — how many pixels have each colour
    counts : (V, V) float64 — C, symmetric
    """
    pixels = np.zeros(n_colors, dtype=np.int64)
    counts = np.zeros(n_colors * n_colors, dtype=np.float64)
    offsets = [(0, dx) for dx in range(1, radius + 1)]
    offsets += [(dy, dx) for dy in range(1, radius + 1) for dx in range(-radius, radius + 1)]
    for idx in index_maps:
        h, w = idx.shape
        pixels += np.bincount(idx.ravel(), minlength=n_colors)
        for dy, dx in offsets:
            if dy >= h or abs(dx) >= w:
                continue
            x0, x1 = max(0, -dx), w - max(0, dx)  # p = (y, x), q = (y + dy, x + dx), both inside
            a = idx[: h - dy, x0:x1]
            b = idx[dy:h, x0 + dx : x1 + dx]
            counts += np.bincount((a * n_colors + b).ravel(), minlength=n_colors * n_colors)
    c = counts.reshape(n_colors, n_colors)
    return pixels, c + c.T


def pmi(counts: np.ndarray, smoothing: float = 1.0) -> np.ndarray:
    """Pointwise mutual information of a symmetric co-occurrence table: log (C'_ab T') / (R'_a R'_b) with
    C' = C + ``smoothing``, R' its row sums and T' its total."""
    c = np.asarray(counts, dtype=np.float64) + float(smoothing)
    rows = c.sum(axis=1)
    return np.log(c) + np.log(c.sum()) - np.log(rows)[:, None] - np.log(rows)[None, :]
