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

from prh._validation import check_choice, check_features, check_int
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
    #: held-out layer selection (``select="held-out"``), else None
    held_out: HeldOut | None = None

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
        if self.held_out is not None:
            out["held_out"] = self.held_out.to_dict()
        return out


#: Layer-selection rules of :func:`sweep`: the best pair scored on the items that chose it, or on other items.
SELECT_RULES = ("same-items", "held-out")


@dataclass
class HeldOut:
    """Held-out layer selection: over random half splits of the items, the best layer pair chosen on one half
    and scored on the other.

    Attributes
    ----------
    scores : (S,) float64, the held-out score of each split (the chosen pair scored on the other half).
    same_items : (S,) float64, the maximum over layer pairs on each selection half (the same-items score at the
        same N, for comparison).
    chosen : (Lx, Ly) int64, how often each layer pair was chosen.
    seed : seed of the splits.
    """

    scores: np.ndarray
    same_items: np.ndarray
    chosen: np.ndarray
    seed: int

    @property
    def mean(self) -> float:
        """Mean held-out score over the splits (the estimate to report)."""
        return float(self.scores.mean())

    @property
    def interval(self) -> tuple[float, float]:
        """2.5 % and 97.5 % quantiles of the held-out scores over splits (their spread; the splits share items,
        so this is not a confidence interval of the mean)."""
        low, high = np.quantile(self.scores, [0.025, 0.975])
        return float(low), float(high)

    @property
    def top_pair(self) -> tuple[tuple[int, int], float]:
        """The layer pair chosen most often and the fraction of splits that chose it."""
        i, j = np.unravel_index(int(np.argmax(self.chosen)), self.chosen.shape)
        return (int(i), int(j)), float(self.chosen[i, j] / self.chosen.sum())

    def to_dict(self) -> dict:
        """JSON-ready summary: mean, interval, the most chosen pair, the per-split scores and the choice counts."""
        pair, share = self.top_pair
        return {
            "mean": self.mean,
            "interval": list(self.interval),
            "same_items_mean": float(self.same_items.mean()),
            "top_pair": list(pair),
            "top_pair_share": share,
            "splits": len(self.scores),
            "seed": self.seed,
            "scores": self.scores.tolist(),
            "chosen": self.chosen.tolist(),
        }


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
        layers = spec.fit_scale(layers, params)  # kept rescaled: bootstrap and null fallbacks reuse them
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


def held_out_selection(
    X: object, Y: object, metric: str = "mutual_knn", splits: int = 20, seed: int = 0, **metric_kw: Any
) -> HeldOut:
    """Choose the best layer pair on one random half of the items and score it on the other half, ``splits`` times.

    The same-items maximum of a layer grid is biased upward (the pair is chosen and scored on the same items);
    the held-out score is not: under independence it centres on the metric's null expectation.

    Parameters
    ----------
    X, Y : as for :func:`sweep` (N items each, already prepared).
    metric : any name in :func:`prh.metrics.names`; its options (``metric_kw``) are validated for N/2 items.
    splits : S, the number of random half splits (>= 1).
    seed : seed of the splits.

    Returns
    -------
    :class:`HeldOut` (per-split held-out and same-items scores, choice counts).
    """
    splits = check_int(splits, "splits", minimum=1, hint="random half splits of the items")
    seed = check_int(seed, "select_seed")
    xs, ys = as_layers(X, "X"), as_layers(Y, "Y")
    n = xs[0].shape[0]
    if ys[0].shape[0] != n:
        raise InputError(f"X and Y must describe the same samples: X has N={n}, Y has N={ys[0].shape[0]}.")
    if n < 4:
        raise InputError(f"held-out selection splits the items in halves; it needs N >= 4, got N={n}.")
    ys = [y.to(xs[0].device) for y in ys]
    rng = np.random.default_rng(seed)
    held, same = np.empty(splits), np.empty(splits)
    chosen = np.zeros((len(xs), len(ys)), dtype=np.int64)
    for s in range(splits):
        order = torch.as_tensor(rng.permutation(n), device=xs[0].device)
        pick, score = order[: n // 2], order[n // 2 :]
        sel = sweep([x[pick] for x in xs], [y[pick] for y in ys], metric, **metric_kw)
        i, j = sel.best_layers
        chosen[i, j] += 1
        same[s] = sel.best
        held[s] = sweep([xs[i][score]], [ys[j][score]], metric, **metric_kw).best
    return HeldOut(held, same, chosen, seed)


def sweep(
    X: object,
    Y: object,
    metric: str = "mutual_knn",
    select: str = "same-items",
    splits: int = 20,
    select_seed: int = 0,
    **metric_kw: Any,
) -> Sweep:
    """Score every pair of layers of X and Y with ``metric`` and return the grid and the best pair.

    Parameters
    ----------
    X : (N, Lx, D_x) array or list of Lx (N, D_i) layers, already prepared (:func:`prh.prepare`).
    Y : (N, Ly, D_y) array or list of Ly layers; moved to X's device.
    metric : any name in :func:`prh.metrics.names`.
    select : ``"same-items"`` (default: the best pair scored on the items that chose it, ``Sweep.best``) or
        ``"held-out"``: also run :func:`held_out_selection` (``splits`` random half splits seeded by
        ``select_seed``) and attach it as ``Sweep.held_out``.
    **metric_kw : metric options (``k`` for kNN metrics, ``kernel``/``sigma`` for CKA, ``dim`` for SVCCA).

    Returns
    -------
    :class:`Sweep` with ``scores`` (Lx, Ly), ``best`` and ``best_layers`` (i, j), and ``held_out``.
    """
    select = check_choice(select, "select", SELECT_RULES)
    cx = cache_layers(X, metric, name="X", **metric_kw)
    cy = cx if Y is X else cache_layers(Y, metric, name="Y", device=cx.device, **metric_kw)
    result = sweep_caches(cx, cy)
    if select == "held-out":
        result.held_out = held_out_selection(cx.layers, cy.layers, metric, splits, select_seed, **metric_kw)
    return result


def sweep_many(X: object, Ys: Sequence[object], metric: str = "mutual_knn", **metric_kw: Any) -> list[Sweep]:
    """Sweep X against several models, caching X's layers once."""
    cx = cache_layers(X, metric, name="X", **metric_kw)
    return [
        sweep_caches(cx, cache_layers(y, metric, name=f"Ys[{i}]", device=cx.device, **metric_kw))
        for i, y in enumerate(Ys)
    ]
