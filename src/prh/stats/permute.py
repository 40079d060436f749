"""Row permutations of features: the building block of permutation nulls.

A permutation ``perm`` of the N samples turns ``Y`` into ``Y[perm]`` (row i of the permuted data is the old row
``perm[i]``). How a metric's per-layer *cache* is re-indexed by a permutation is the metric's own business
(``MetricSpec.permute_cache``, next to the metric); this module only draws permutations and permutes raw rows.
"""

from __future__ import annotations

import torch


def random_permutations(n: int, count: int, generator: torch.Generator) -> torch.Tensor:
    """``count`` independent uniform permutations of ``range(n)`` as a (count, n) int64 CPU tensor.

    Drawn one after the other from ``generator`` (CPU), so permutation number k depends only on the seed and k —
    not on batch sizes or on the device the null is computed on.
    """
    if count == 0:
        return torch.empty((0, n), dtype=torch.long)
    return torch.stack([torch.randperm(n, generator=generator) for _ in range(count)])


def permute_rows(x: torch.Tensor, perm: torch.Tensor) -> torch.Tensor:
    """``x[perm]``: the features of the permuted samples (row i is the old row ``perm[i]``)."""
    return x.index_select(0, perm.to(x.device))
