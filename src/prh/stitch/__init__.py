"""Model stitching: a functional measure of representational similarity that runs the models.

Block i of model A feeds block j+1 of model B through one fitted 1×1 convolution; the stitched model is judged
against B's own outputs on held-out items (label-free). :func:`stitch` runs a grid of blocks with its controls
(self-stitching, a random-noise sender, shuffled pairing) and the mutual-kNN grid of the same pair beside it;
:func:`write_stitch` saves it into a results folder as a report section (``prh report`` includes it).
"""

from __future__ import annotations

from prh.stitch._section import write_stitch
from prh.stitch._stitch import StitchConfig, StitchResult, stitch

__all__ = ["StitchConfig", "StitchResult", "stitch", "write_stitch"]
