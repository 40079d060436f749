"""Layer sweeps: score every (layer of X, layer of Y) pair and find the best one — the hot path.

The reference recomputes neighbours / Gram matrices for every layer pair (Lx * Ly times). Here each layer is
processed once (:func:`cache_layers`: neighbour lists for kNN metrics, centred Gram matrices for CKA, masked
kernels for CKNNA, SVD bases for SVCCA) and the grid is scored from the caches in one batched step
(:func:`sweep_caches`). The grid is identical to calling the metric on every pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from prh._validation import check_features
from prh.errors import InputError
from prh.metrics import spec as metric_spec


@dataclass
class Sweep:
    """Result of a layer sweep.

    Attributes
    ----------
    scores : (Lx, Ly) float64 array; ``scores[i, j] = metric(X_i, Y_j)``.
    metric : metric name.
    params : the metric options used (e.g. ``{"k": 10}``).
    diagnostics : what the metric reports about its per-layer caches, e.g. ``{"x": [{"recall": 0.98}, ...],
        "y": [...]}`` for approximate neighbour lists; empty when there is nothing to report.
    """

    scores: np.ndarray
    metric: str
    params: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)

    @property
    def best_layers(self) -> tuple[int, int]:
        """(i, j) of the highest score (the first one on ties), also when every score is <= 0."""
        i, j = np.unravel_index(int(np.argmax(self.scores)), self.scores.shape)
        return int(i), int(j)

    @property
    def best(self) -> float:
        """The highest score of the grid."""
        return float(self.scores[self.best_layers])

    def to_dict(self) -> dict:
        """JSON-ready summary: metric, params, best score, best layers and the grid as nested lists."""
        out = {
            "metric": self.metric,
            "params": self.params,
            "score": self.best,
            "best_layers": list(self.best_layers),
            "grid": self.scores.tolist(),
        }
        if self.diagnostics:
            out["diagnostics"] = self.diagnostics
        return out


@dataclass
class LayerCaches:
    """Per-layer precomputation of one model's layers for one metric (reusable across many sweeps)."""

    metric: str
    params: dict
    n: int
    caches: list[Any]
    device: torch.device
    #: the raw (N, D_l) layers the caches were built from (lets permutation nulls recompute caches)
    layers: list[torch.Tensor] | None = None


def as_layers(x: object, name: str) -> list[torch.Tensor]:
    """Validate ``x`` as a list of (N, D_l) layers: an (N, L, D) array, an (N, D) array (one layer) or a list."""
    if isinstance(x, (list, tuple)):
        if not x:
            raise InputError(f"{name} is an empty list of layers; pass at least one (N, D) layer.")
        layers = [check_features(layer, f"{name}[{i}]", ndim=2) for i, layer in enumerate(x)]
    else:
        t = check_features(x, name, ndim=(2, 3))
        layers = [t] if t.ndim == 2 else list(t.unbind(dim=1))
    n = layers[0].shape[0]
    for i, layer in enumerate(layers):
        if layer.shape[0] != n:
            raise InputError(f"{name}[{i}] has N={layer.shape[0]} rows but {name}[0] has N={n}.")
    return layers


def cache_layers(
    x: object,
    metric: str = "mutual_knn",
    name: str = "X",
    device: torch.device | str | None = None,
    **metric_kw: Any,
) -> LayerCaches:
    """Validate ``x`` and run the metric's per-layer precomputation on every layer.

    Parameters
    ----------
    x : (N, L, D) or (N, D) array, or a list of (N, D_l) layers, already prepared (see :func:`prh.prepare`).
    metric : registry name.
    device : where to compute (default: ``x``'s device).
    **metric_kw : metric options (e.g. ``k=10``), validated for this N.
    """
    spec = metric_spec(metric)
    layers = as_layers(x, name)
    if device is not None:
        layers = [layer.to(device) for layer in layers]
    n = layers[0].shape[0]
    params = spec.check_kwargs(n, **metric_kw)
    spec.check_memory(layers, params, name)
    try:
        caches = spec.caches(layers, **params)
    except InputError as err:  # name the model whose layers are unusable (e.g. a constant layer)
        raise InputError(f"{name}: {err}") from None
    return LayerCaches(metric, params, layers[0].shape[0], caches, layers[0].device, layers)


def sweep_caches(cx: LayerCaches, cy: LayerCaches) -> Sweep:
    """Score all layer pairs of two cached models (same metric, options and N)."""
    if cx.metric != cy.metric or cx.params != cy.params:
        raise InputError(
            f"the two caches were built for different metrics/options: {cx.metric}{cx.params} vs {cy.metric}{cy.params}."
        )
    if cx.n != cy.n:
        raise InputError(f"X and Y must describe the same samples: X has N={cx.n}, Y has N={cy.n}.")
    if cx.device != cy.device:
        raise InputError(f"X is on {cx.device} and Y on {cy.device}; cache both on the same device.")
    spec = metric_spec(cx.metric)
    grid = spec.grid(cx.caches, cy.caches, **cx.params)
    scores = grid.detach().cpu().numpy().astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise InputError(f"{cx.metric} produced non-finite scores; check the inputs for degenerate layers.")
    diagnostics = {}
    if spec.cache_info is not None:
        info = {
            side: [spec.cache_info(c) for c in caches]
            for side, caches in (("x", cx.caches), ("y", cy.caches))
        }
        if any(any(d) for d in info.values()):
            diagnostics = info
    return Sweep(scores, cx.metric, dict(cx.params), diagnostics)


def sweep(X: object, Y: object, metric: str = "mutual_knn", **metric_kw: Any) -> Sweep:
    """Score every pair of layers of X and Y with ``metric`` and return the grid and the best pair.

    Parameters
    ----------
    X : (N, Lx, D_x) array or list of Lx (N, D_i) layers, already prepared (:func:`prh.prepare`).
    Y : (N, Ly, D_y) array or list of Ly layers; moved to X's device.
    metric : any name in :func:`prh.metrics.names`.
    **metric_kw : metric options (``k`` for kNN metrics, ``kernel``/``sigma`` for CKA, ``dim`` for SVCCA).

    Returns
    -------
    :class:`Sweep` with ``scores`` (Lx, Ly), ``best`` and ``best_layers`` (i, j).
    """
    cx = cache_layers(X, metric, name="X", **metric_kw)
    cy = cx if Y is X else cache_layers(Y, metric, name="Y", device=cx.device, **metric_kw)
    return sweep_caches(cx, cy)


def sweep_many(X: object, Ys: Sequence[object], metric: str = "mutual_knn", **metric_kw: Any) -> list[Sweep]:
    """Sweep X against several models, caching X's layers once."""
    cx = cache_layers(X, metric, name="X", **metric_kw)
    return [
        sweep_caches(cx, cache_layers(y, metric, name=f"Ys[{i}]", device=cx.device, **metric_kw))
        for i, y in enumerate(Ys)
    ]
