"""The alignment pipeline: stored features of two model sets -> a tidy table of best-layer alignment scores.

For every metric and every model pair, :func:`prh.sweep` runs over all layer pairs of the prepared features
(each model's per-layer caches are built once per metric and reused for all its pairs). Results hold a tidy
``pandas.DataFrame`` (one row per model pair and metric), the full layer grids and a provenance record, and are
saved as CSV + parquet + JSON + safetensors — never pickle (:mod:`prh.align._results`, re-exported here).
The streamed form of the grid, one model's features in memory at a time, is :mod:`prh.align.stream`.

Length: :class:`PairGrid` (the pair grid with its controls, calibration, bootstrap and held-out selection) is one
class of about 300 lines; splitting it further would scatter one loop's steps over files.
"""

from __future__ import annotations

import hashlib
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch

from prh._sweep import LayerCaches, cache_layers, held_out_selection, sweep_caches
from prh.align._loading import clamp_scope, prepare_all
from prh.align._results import RESULT_CORE_COLUMNS, Results

__all__ = [
    "HELD_OUT_COLUMNS",
    "RESULT_CORE_COLUMNS",
    "STATS_COLUMNS",
    "TABLE_COLUMNS",
    "ModelFeatures",
    "PairGrid",
    "Results",
    "load_features",
]
from prh.align.config import AlignConfig, metric_options
from prh.errors import InputError
from prh.features import shared_items
from prh.metrics import spec as metric_spec

TABLE_COLUMNS = [
    "model_x",
    "model_y",
    "modality_x",
    "modality_y",
    "family_x",
    "family_y",
    "metric",
    "k",
    "N",
    "score",
    "best_layer_x",
    "best_layer_y",
    "n_layers_x",
    "n_layers_y",
    "params_x",
    "params_y",
    "bpb_x",
    "bpb_y",
    "imagenet_top1_x",
    "imagenet_top1_y",
    "control",
]
STATS_COLUMNS = ["tau", "p_value", "calibrated_score", "ci_low", "ci_high"]
#: the columns of held-out layer selection (``AlignConfig(select="held-out")``)
HELD_OUT_COLUMNS = [
    "held_out",
    "held_out_low",
    "held_out_high",
    "same_items_half",
    "held_out_layer_x",
    "held_out_layer_y",
    "held_out_share",
]


@dataclass
class ModelFeatures:
    """One model's prepared features and what is known about it.

    layers : L float32 tensors (N, D_l), clamped and L2-normalised by :func:`prh.prepare`.
    info : model, modality, family, params, bits_per_byte, competence, ... (from the feature store's sidecar).
    """

    name: str
    layers: list[torch.Tensor]
    info: dict
    #: R repeated measurements (each (N, D), as stored, not prepared) of an imported recording; else empty
    repeats: list[torch.Tensor] = field(default_factory=list, repr=False)

    @property
    def modality(self) -> str:
        return str(self.info.get("modality") or "unknown")

    @property
    def params(self) -> float:
        value = self.info.get("params")
        return float(value) if value is not None else float("nan")

    @property
    def bpb(self) -> float:
        value = self.info.get("bits_per_byte")
        return float(value) if value is not None else float("nan")

    @property
    def imagenet_top1(self) -> float:
        value = (self.info.get("competence") or {}).get("imagenet_top1")
        return float(value) if value is not None else float("nan")

    @property
    def content_key(self) -> tuple[str, str, str]:
        """What the layers are: (name, the store's write id — or, for features built in memory, the layer list's
        identity —, the row order applied by :meth:`permuted`). Equal keys mean equal tensors."""
        write_id = self.info.get("write_id")
        source = str(write_id) if write_id else f"memory:{id(self.layers)}"
        return (self.name, source, str(self.info.get("row_order") or ""))

    def permuted(self, perm: torch.Tensor, name: str) -> ModelFeatures:
        """The same model with its samples (rows) re-ordered by ``perm`` (e.g. shuffled captions)."""
        digest = hashlib.sha256(torch.as_tensor(perm).cpu().numpy().tobytes()).hexdigest()[:16]
        order = "/".join(filter(None, [str(self.info.get("row_order") or ""), digest]))
        info = {**self.info, "model": name, "row_order": order}
        return ModelFeatures(name, [layer[perm] for layer in self.layers], info)


def load_features(
    models: Sequence[str],
    store: Any,
    dataset: Any = None,
    dataset_name: str | None = None,
    n: int | None = None,
    pools: dict[str, str] | None = None,
    q: float = 0.95,
) -> list[ModelFeatures]:
    """Load and prepare stored features of ``models``; every missing model is reported at once.

    Features must come from the same data: with ``dataset`` the store checks each fingerprint against it;
    with only ``dataset_name`` the fingerprints of all models must agree.
    """
    pools = {name: (pools or {}).get(name, "mean") for name in models}
    # every missing model and any disagreement of the data are reported from the sidecars, before any tensor is read
    store.find_many(list(models), pools, dataset=dataset, dataset_name=dataset_name, n=n)
    stored = [store.load(dataset, name, pools[name], dataset_name=dataset_name, n=n) for name in models]
    rows = shared_items(stored)  # imported subsets: every model is restricted to the items all of them have
    out = []
    for name, s in zip(models, stored):
        layers, repeats, info = s.layers, s.repeats, {**s.meta, "model": name}
        if rows is not None:
            layers, repeats = [t[rows] for t in layers], [t[rows] for t in repeats]
            info["items"] = {"n": int(rows.numel()), "shared": int(rows.sum())}
            info["item_mask"] = rows  # (N,) bool: the dataset items kept (not in provenance: a tensor)
        out.append(ModelFeatures(name, prepare_all(layers, q, clamp_scope(info)), info, repeats))
    return out


@dataclass
class PairGrid:
    """Alignment of model set X against model set Y (or X against itself) over all layer pairs.

    Parameters
    ----------
    models_x, models_y : list of ModelFeatures
        Prepared features (see :func:`load_features`). With ``models_y=None`` every pair within X is scored;
        symmetric metrics compute each unordered pair once (diagonal included).
    config : AlignConfig, optional
        The metrics and statistics (default ``AlignConfig()``; a mapping of its fields is accepted too). Used here:
        ``metrics``, ``k``, ``calibrate`` (adds tau, p_value, calibrated_score), ``calibrate_metrics``,
        ``calibrate_within``, ``bootstrap`` (a CI of the best layer pair's score, see
        :func:`prh.stats.bootstrap_ci`; adds ci_low, ci_high), ``alpha`` and ``seed``. Its ``q``, ``pool`` and
        ``shuffle_control`` concern loading the features and building ``controls``, which
        :func:`~prh.align.run_alignment` does.
    controls : dict of str to (N,) permutation tensors, optional
        Extra model pairs with the samples of one side shuffled, e.g. ``{"shuffled_captions": perm}`` re-orders
        the rows of every language model by ``perm`` for cross-modal pairs (equivalent to shuffling the captions,
        since each sample's features do not depend on the others).
    device : str, default "cpu"
        Where the per-layer caches are built and compared.

    The config's fields are readable as attributes too (``grid.metrics``, ``grid.k``, ...).
    """

    models_x: list[ModelFeatures]
    models_y: list[ModelFeatures] | None = None
    config: AlignConfig = field(default_factory=AlignConfig)
    controls: dict[str, torch.Tensor] = field(default_factory=dict)
    device: str = "cpu"
    #: shuffled copies of models for the controls, by (content, permutation); emptied at the end of run()
    _shuffled: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.config = AlignConfig.coerce(self.config)

    @property
    def metrics(self) -> tuple[str, ...]:
        return self.config.metrics

    @property
    def k(self) -> int:
        return self.config.k

    @property
    def calibrate(self) -> int:
        return self.config.calibrate

    @property
    def calibrate_metrics(self) -> tuple[str, ...] | None:
        return self.config.calibrate_metrics

    @property
    def calibrate_within(self) -> bool:
        return self.config.calibrate_within

    @property
    def bootstrap(self) -> int:
        return self.config.bootstrap

    @property
    def alpha(self) -> float:
        return self.config.alpha

    @property
    def seed(self) -> int:
        return self.config.seed

    def pairs(self, metric: str) -> list[tuple[ModelFeatures, ModelFeatures]]:
        """The model pairs scored for ``metric`` (without controls), in the order of :meth:`run`.

        X x Y when ``models_y`` is given; within X every ordered pair, or each unordered pair once (diagonal
        included) for a symmetric metric.
        """
        xs = self.models_x
        if self.models_y is not None:
            return [(x, y) for x in xs for y in self.models_y]
        if metric_spec(metric).symmetric:
            return [(xs[i], xs[j]) for i in range(len(xs)) for j in range(i, len(xs))]
        return [(x, y) for x in xs for y in xs]

    def _metric_kwargs(self, metric: str) -> dict:
        return metric_options(self.config, metric)

    def control_pairs(self, metric: str) -> list[tuple[str, ModelFeatures, ModelFeatures]]:
        """``(control, x, y)`` of every control pair for ``metric``: the cross-modal pairs of :meth:`pairs` (models
        with different modality labels: language, vision, brain, audio, ...) with one side's rows permuted by each
        control's permutation -- the language side when there is one, else ``y`` (needs the models' tensors). Each
        language model is permuted once per control (:meth:`run` reuses the copy for every metric and partner)."""
        out = []
        for control, perm in self.controls.items():
            for x, y in self.pairs(metric):
                if x.modality == y.modality:
                    continue
                if x.modality == "language":
                    out.append((control, self._shuffle(x, perm), y))
                else:
                    out.append((control, x, self._shuffle(y, perm)))
        return out

    def _shuffle(self, model: ModelFeatures, perm: torch.Tensor) -> ModelFeatures:
        """``model.permuted(perm)``, made once per (model content, permutation) while :meth:`run` runs."""
        key = (model.content_key, hashlib.sha256(torch.as_tensor(perm).cpu().numpy().tobytes()).digest())
        if key not in self._shuffled:
            self._shuffled[key] = model.permuted(perm, model.name)
        return self._shuffled[key]

    def plan(self) -> list[tuple[str, str, str, str]]:
        """Every job of :meth:`run`, in its order: ``(metric, control, model_x name, model_y name)``.

        Control is ``"none"`` for the real pairs. Needs only the models' names and modalities (no tensors), so a
        scheduler (e.g. :func:`prh.distributed.align_ray`) can list the work on tensor-free stand-ins.
        """
        jobs = [(metric, "none", x.name, y.name) for metric in self.metrics for x, y in self.pairs(metric)]
        for metric in self.metrics:
            for control in self.controls:
                for x, y in self.pairs(metric):
                    if x.modality != y.modality:
                        jobs.append((metric, control, x.name, y.name))
        return jobs

    def run(self, progress: bool = True) -> Results:
        """Score every pair for every metric; returns :class:`Results`."""
        if not self.models_x:
            raise InputError("models_x is empty; give at least one model.")
        n_values = {m.layers[0].shape[0] for m in self.models_x + (self.models_y or [])}
        if len(n_values) != 1:
            raise InputError(f"all models need the same number of samples; got N in {sorted(n_values)}.")
        n = n_values.pop()
        start = time.perf_counter()
        real_rows: list[dict] = []
        control_rows: list[dict] = []
        real_grids: dict[str, np.ndarray] = {}
        control_grids: dict[str, np.ndarray] = {}
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(self.plan()), desc="alignment", unit="pair", dynamic_ncols=True)
        # One metric at a time, its real pairs and then its control pairs, so that each model's caches for the metric
        # are built once (keyed by content) and serve all its partners, its controls and their statistics; only one
        # metric's caches are in memory at a time. Rows and grids come out in the order of plan().
        caches: dict[tuple, LayerCaches] = {}  # by content: a model's caches serve its real and control pairs

        def cached(model: ModelFeatures, metric: str, kw: dict) -> LayerCaches:
            if model.content_key not in caches:
                caches[model.content_key] = cache_layers(
                    model.layers, metric, name=model.name, device=self.device, **kw
                )
            return caches[model.content_key]

        try:
            for metric in self.metrics:
                caches.clear()  # keep one metric's caches in memory at a time
                kw = self._metric_kwargs(metric)
                jobs = [("none", x, y) for x, y in self.pairs(metric)]
                jobs += self.control_pairs(metric)
                for control, x, y in jobs:
                    cx, cy = cached(x, metric, kw), cached(y, metric, kw)
                    result = sweep_caches(cx, cy)
                    row = self._row(metric, control, x, y, n, result)
                    if self.calibrate or self.bootstrap:
                        row.update(self._statistics(metric, kw, cx, cy, x, y, result))
                    if self.config.select == "held-out":
                        row.update(self._held_out(metric, kw, cx, cy))
                    (real_rows if control == "none" else control_rows).append(row)
                    grids = real_grids if control == "none" else control_grids
                    grids[Results.grid_key(metric, control, x.name, y.name)] = result.scores
                    if bar is not None:
                        bar.update(1)
        finally:
            caches.clear()
            self._shuffled.clear()  # the shuffled copies of the language models served every metric; free them
            if bar is not None:
                bar.close()
        rows = real_rows + control_rows
        grids = {**real_grids, **control_grids}
        columns = TABLE_COLUMNS + ([c for c in STATS_COLUMNS] if (self.calibrate or self.bootstrap) else [])
        columns += HELD_OUT_COLUMNS if self.config.select == "held-out" else []
        table = pd.DataFrame(rows, columns=columns)
        provenance = self._provenance(n, time.perf_counter() - start)
        return Results(table, grids, provenance)

    def _row(self, metric, control, x, y, n, result) -> dict:
        """One table row of a pair's :class:`~prh._sweep.Sweep` ``result`` (best score, best layers, grid shape)."""
        (bx, by), shape = result.best_layers, result.scores.shape
        return {
            "model_x": x.name,
            "model_y": y.name,
            "modality_x": x.modality,
            "modality_y": y.modality,
            "family_x": x.info.get("family", ""),
            "family_y": y.info.get("family", ""),
            "metric": metric,
            "k": self.k if "k" in metric_spec(metric).defaults else None,
            "N": n,
            "score": result.best,
            "best_layer_x": bx,
            "best_layer_y": by,
            "n_layers_x": shape[0],
            "n_layers_y": shape[1],
            "params_x": x.params,
            "params_y": y.params,
            "bpb_x": x.bpb,
            "bpb_y": y.bpb,
            "imagenet_top1_x": x.imagenet_top1,
            "imagenet_top1_y": y.imagenet_top1,
            "control": control,
        }

    def _held_out(self, metric: str, kw: dict, cx: LayerCaches, cy: LayerCaches) -> dict:
        """Held-out layer selection of one pair (best pair chosen on half the items, scored on the other half)."""
        held = held_out_selection(cx.layers, cy.layers, metric, self.config.select_splits, self.seed, **kw)
        (li, lj), share = held.top_pair
        low, high = held.interval
        return {
            "held_out": held.mean,
            "held_out_low": low,
            "held_out_high": high,
            "same_items_half": float(held.same_items.mean()),
            "held_out_layer_x": li,
            "held_out_layer_y": lj,
            "held_out_share": share,
        }

    def wants_statistics(self, metric: str, x: ModelFeatures, y: ModelFeatures) -> bool:
        """Whether the pair gets calibration / bootstrap (``calibrate_metrics``, ``calibrate_within``)."""
        wanted = self.calibrate_metrics is None or metric in self.calibrate_metrics
        return wanted and (self.calibrate_within or x.modality != y.modality)

    def _statistics(self, metric, kw, cx, cy, x, y, result) -> dict:
        """Permutation calibration of the layer-maximised score (reusing the observed sweep ``result`` and the
        caches ``cx``, ``cy``) and a bootstrap CI of the best layer pair's score."""
        out = dict.fromkeys(STATS_COLUMNS, float("nan"))
        if not self.wants_statistics(metric, x, y):
            return out
        if self.calibrate:
            out.update(self.calibration(metric, kw, cx, cy, result))
        if self.bootstrap:
            bx, by = result.best_layers
            out.update(self.interval(metric, kw, x.layers[bx], y.layers[by]))
        return out

    def calibration(self, metric: str, kw: dict, cx: LayerCaches, cy: LayerCaches, result: Any) -> dict:
        """``tau``, ``p_value``, ``calibrated_score`` of one pair from its caches and observed sweep."""
        from prh import stats

        cal = stats.calibrate_sweep(
            cx, cy, metric, K=self.calibrate, alpha=self.alpha, seed=self.seed, observed=result, **kw
        )
        return {"tau": cal.tau, "p_value": cal.p_value, "calibrated_score": cal.calibrated}

    def interval(self, metric: str, kw: dict, x_layer: torch.Tensor, y_layer: torch.Tensor) -> dict:
        """``ci_low``, ``ci_high``: the bootstrap interval of the score of one layer pair."""
        from prh import stats

        ci = stats.bootstrap_ci(x_layer, y_layer, metric, B=self.bootstrap, seed=self.seed, **kw)
        return {"ci_low": ci.ci_low, "ci_high": ci.ci_high}

    def _provenance(self, n: int, seconds: float) -> dict:
        from prh._provenance import run_stamp

        models = self.models_x + [m for m in (self.models_y or []) if m not in self.models_x]
        return {
            **run_stamp(wall_time_s=seconds),
            "N": n,
            "dataset": (models[0].info.get("dataset") or {}),
            "metrics": {m: {**metric_spec(m).defaults, **self._metric_kwargs(m)} for m in self.metrics},
            "k": self.k,
            "calibrate_K": self.calibrate,
            "bootstrap_B": self.bootstrap,
            "alpha": self.alpha,
            "seed": self.seed,
            "controls": sorted(self.controls),
            "models_x": [m.name for m in self.models_x],
            "models_y": [m.name for m in self.models_y] if self.models_y is not None else None,
            "models": {
                m.name: {
                    key: m.info.get(key)
                    for key in (
                        "source",
                        "revision",
                        "adapter",
                        "modality",
                        "family",
                        "pool",
                        "params",
                        "bits_per_byte",
                        "competence",
                        "layer_names",
                        "dtype",
                        "citation",
                        "items",
                        "repeats",
                    )
                }
                for m in models
            },
        }


def __getattr__(name: str):
    """``Experiment`` is the old name of :class:`PairGrid`; it warns and is removed in the next release."""
    if name == "Experiment":
        warnings.warn(
            "prh.align.engine.Experiment is deprecated; use prh.align.PairGrid (same class, new name)",
            DeprecationWarning,
            stacklevel=2,
        )
        return PairGrid
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
