"""The paper's feature preprocessing: clamp outliers at an exact quantile of |x|, then L2-normalise rows.

One threshold per model, computed over all of its layers together (as the reference does for an (N, L, D)
tensor). The quantile is found by selection (``numpy.partition`` / ``torch.kthvalue``), not by sorting the whole
tensor: for 1024 x 25 x 4096 features that is several times faster and needs one copy of |x| instead of the
sort's values-plus-int64-indices.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from prh._validation import check_features
from prh.errors import InputError


def _as_layers(x: object) -> list[torch.Tensor]:
    """Validate ``x`` as float32 tensors: the whole (N, D)/(N, L, D) tensor as one item, or each listed layer."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise InputError("x is an empty list of layers; pass at least one (N, D) layer.")
        layers = [check_features(layer, f"x[{i}]", ndim=2).float() for i, layer in enumerate(x)]
        n = layers[0].shape[0]
        for i, layer in enumerate(layers):
            if layer.shape[0] != n:
                raise InputError(
                    f"x[{i}] has N={layer.shape[0]} rows but x[0] has N={n}; all layers need the same N."
                )
        return layers
    return [check_features(x, "x", ndim=(2, 3)).float()]


def quantile_threshold(layers: Sequence[torch.Tensor], q: float) -> float:
    """The exact q-quantile of |x| over all entries of all ``layers``: the element of 0-based rank
    ``int(q * numel)`` in ascending order of |x| (the reference's ``exact=True`` definition)."""
    total = sum(layer.numel() for layer in layers)
    rank = min(int(q * total), total - 1)
    if all(layer.device.type == "cpu" for layer in layers):
        buffer = np.empty(total, dtype=np.float32)
        offset = 0
        for layer in layers:
            size = layer.numel()
            np.abs(layer.reshape(-1).numpy(), out=buffer[offset : offset + size])
            offset += size
        buffer.partition(rank)
        return float(buffer[rank])
    flat = torch.cat([layer.reshape(-1).abs() for layer in layers])
    return float(torch.kthvalue(flat, rank + 1).values)


def prepare(x: object, q: float = 0.95, normalize: bool = True) -> torch.Tensor | list[torch.Tensor]:
    """Clamp |x| at its exact q-quantile (one threshold over all layers) and L2-normalise each row of each layer.

    Parameters
    ----------
    x : (N, D) or (N, L, D) tensor/array, or a list of (N, D_l) layers (e.g. CNN blocks of different widths).
        For a list, one threshold over all layers is used (the reference clamps list layers one by one).
    q : quantile in (0, 1]; 1 disables the clamp.
    normalize : L2-normalise every row of every layer after clamping (zero rows stay zero).

    Returns
    -------
    float32 tensor of the same shape as ``x`` (a list if ``x`` was a list), on ``x``'s device.
    """
    if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0.0 < q <= 1.0:
        raise InputError(f"q={q!r} must be a quantile in (0, 1]; use q=1 to disable outlier clamping.")
    layers = _as_layers(x)
    if q < 1.0:
        threshold = quantile_threshold(layers, q)
        layers = [layer.clamp(-threshold, threshold) for layer in layers]
    if normalize:
        layers = [F.normalize(layer, p=2, dim=-1) for layer in layers]
    return layers if isinstance(x, (list, tuple)) else layers[0]
