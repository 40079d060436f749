"""Preparing stored features one layer at a time: the same numbers as :func:`prh.prepare`, with one model's raw
features (in their stored dtype) and one prepared layer in memory.

:func:`prepared_layers` yields each layer clamped at the model's exact q-quantile of |x| and L2-normalised, and
drops the raw layer as soon as it is prepared. The threshold is the element of rank ``int(q * numel)`` of |x| over
all layers, as in :func:`prh._prepare.quantile_threshold`; for 16-bit floats (the language models' float16 files)
it is found by counting the 2^15 possible bit patterns of |x| — exact, and without a copy of the features — since
the order of non-negative 16-bit floats is the order of their bit patterns.

:func:`clamp_scope` says how a model is clamped: one threshold over all its layers (prh's rule, and the
reference's for an (N, L, D) tensor), or one per layer for published files whose ``feats`` was a list of layers
(the reference clamps those layer by layer).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch
import torch.nn.functional as F

from prh._prepare import prepare, quantile_threshold

_HALF = (torch.float16, torch.bfloat16)


def clamp_scope(meta: dict) -> str:
    """``"layer"`` for published features stored from a list of layers, else ``"model"``."""
    layout = (meta.get("published") or {}).get("feats_layout")
    return "layer" if layout == "list" else "model"


def prepare_all(layers: Sequence[torch.Tensor], q: float, scope: str) -> list[torch.Tensor]:
    """All layers prepared at once (the in-memory path): :func:`prh.prepare` over the model or per layer."""
    if scope == "layer":
        return [prepare(layer, q=q) for layer in layers]
    return prepare(list(layers), q=q)


def threshold(layers: Sequence[torch.Tensor], q: float) -> float:
    """The exact q-quantile of |x| over all entries of ``layers`` (any float dtype), equal to
    :func:`~prh._prepare.quantile_threshold` of the float32 layers."""
    if not all(layer.dtype in _HALF and layer.device.type == "cpu" for layer in layers):
        return quantile_threshold([layer.float() for layer in layers], q)
    total = sum(layer.numel() for layer in layers)
    rank = min(int(q * total), total - 1)
    counts = torch.zeros(1 << 15, dtype=torch.int64)
    for layer in layers:
        bits = layer.reshape(-1).view(torch.int16).bitwise_and(0x7FFF)
        counts += torch.bincount(bits.to(torch.int32), minlength=1 << 15)
    pattern = int(torch.searchsorted(counts.cumsum(0), torch.tensor(rank), right=True))
    value = torch.tensor([pattern], dtype=torch.int16).view(layers[0].dtype)
    return float(value.float().item())


def prepared_layers(layers: list[torch.Tensor], q: float, scope: str) -> Iterator[torch.Tensor]:
    """Yield every layer of ``layers`` prepared (float32, clamped, rows L2-normalised), removing each raw layer
    from the list once it is prepared; the same values as :func:`prepare_all`."""
    if not 0.0 < q <= 1.0:
        from prh.errors import InputError

        raise InputError(f"q={q!r} must be a quantile in (0, 1]; use q=1 to disable outlier clamping.")
    shared = threshold(layers, q) if q < 1.0 and scope == "model" else None
    while layers:
        raw = layers.pop(0)
        x = raw.float()
        if q < 1.0:
            t = shared if shared is not None else threshold([raw], q)
            x = x.clamp(-t, t)
        del raw
        yield F.normalize(x, p=2, dim=-1)
