"""Differentiable alignment: training objectives that raise (or measure, with gradients) kernel alignment.

Each is a ``torch.nn.Module`` taking two (B, D) batches whose row i describes the same item, returning a 0-d
tensor, higher = more aligned (minimise ``1 - score`` or ``-score``):

* :class:`LinearCKA`, :class:`UnbiasedCKA` — exact (CKA is smooth): equal to :func:`prh.metrics.cka` /
  :func:`prh.metrics.unbiased_cka` on the same (normalised) rows;
* :class:`SoftMutualKNN`, :class:`SoftCKNNA` — temperature-smoothed neighbourhoods that tend to
  :func:`prh.metrics.mutual_knn` / :func:`prh.metrics.cknna` as the temperature goes to 0.

See docs/training.md for the convergence table and a worked example.
"""

from __future__ import annotations

from prh.losses._cka import LinearCKA, UnbiasedCKA
from prh.losses._soft_knn import SoftCKNNA, SoftMutualKNN, soft_neighbors

__all__ = ["LinearCKA", "SoftCKNNA", "SoftMutualKNN", "UnbiasedCKA", "soft_neighbors"]
