"""Colour science of the colours experiment: sRGB -> CIELAB (D65) and the perceptual distances ΔE."""

from __future__ import annotations

import numpy as np

from prh._validation import check_choice
from prh.experiments.base import require

#: The ΔE formulas :func:`lab_distances` knows.
DELTA_E = ("cie76", "ciede2000")


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """CIELAB (D65) of sRGB values: (..., 3) uint8 (0..255) or float (0..1) -> (..., 3) float64, by scikit-image."""
    color = require("skimage.color", "scikit-image")
    x = np.asarray(rgb)
    x = x.astype(np.float64) / 255.0 if x.dtype == np.uint8 else x.astype(np.float64)
    return np.asarray(color.rgb2lab(x), dtype=np.float64)


def lab_distances(lab: np.ndarray, formula: str = "cie76") -> np.ndarray:
    """(N, N) perceptual distances ΔE of (N, 3) CIELAB values: ``"cie76"`` (Euclidean) or ``"ciede2000"``."""
    formula = check_choice(formula, "delta_e", DELTA_E)
    lab = np.asarray(lab, dtype=np.float64)
    if formula == "cie76":
        d = np.sqrt(((lab[:, None, :] - lab[None, :, :]) ** 2).sum(-1))
    else:
        color = require("skimage.color", "scikit-image")
        n = lab.shape[0]
        d = color.deltaE_ciede2000(np.repeat(lab[:, None, :], n, 1), np.repeat(lab[None, :, :], n, 0))
        d = 0.5 * (d + d.T)
    np.fill_diagonal(d, 0.0)
    return d
