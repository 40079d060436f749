"""The pair grid with bounded memory: one model's raw features in memory at a time.

:class:`StreamedGrid` scores the same pairs as the in-memory :class:`~prh.align.engine.PairGrid` and gives the
same table and grids, bit for bit. For each metric it loads one model (its stored dtype, e.g. float16), prepares it
layer by layer (:mod:`prh.align._loading`), keeps only what the metric's per-layer cache needs (neighbour lists,
a centred Gram matrix, feature-space moments; the caches of the shuffled control too) and drops the raw features
before it loads the next model. The grid, the permutation calibration (which re-indexes caches, never features) and,
with a bootstrap, the best layer pairs (re-read from the store afterwards) follow.

:func:`estimate_memory` says up front what a run will hold at its peak; :meth:`StreamedGrid.run` refuses a run that
would not fit (:func:`prh.memory.require_memory`) before it reads a file, reports the estimate, shows one progress
bar per stage (load, caches, grid, calibration) with counts, and records wall and CPU time per stage and the peak
resident memory in the provenance (``"stages"``, ``"memory"``).
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from prh._sweep import LayerCaches, cache_layers, sweep_caches
from prh.align.engine import (
    HELD_OUT_COLUMNS,
    STATS_COLUMNS,
    TABLE_COLUMNS,
    ModelFeatures,
    PairGrid,
    Results,
)
from prh.errors import InputError
from prh.memory import HEADROOM, available_bytes, format_bytes, release_freed_memory, require_memory
from prh.metrics import spec as metric_spec

#: A model's prepared layers, one at a time (see :func:`prh.align._loading.prepared_layers`).
LayerSource = Callable[[], Iterable[torch.Tensor]]
STAGES = ("check", "load", "caches", "grid", "calibration", "bootstrap")
_DTYPE_BYTES = {"float16": 2, "bfloat16": 2, "float32": 4, "float64": 8}


def _dims(info: dict) -> list[int]:
    dims = info.get("layer_dims")
    if not isinstance(dims, list) or not dims:
        raise InputError(
            f"the store's record of {info.get('model')!r} lacks layer_dims; re-store its features."
        )
    return [int(d) for d in dims]


def _cache_bytes(metric: str, params: dict, n: int, d: int) -> float:
    """Bytes one layer's cache keeps (the metric's own estimate where it has one, else neighbour lists / a Gram)."""
    spec = metric_spec(metric)
    if spec.cache_bytes is not None:
        return float(spec.cache_bytes(n, d, params))
    if "k" in params:
        return 8.0 * n * (params["k"] + 1)
    return 8.0 * n * n


@dataclass(frozen=True)
class MemoryEstimate:
    """What a streamed run holds at its peak (bytes): the largest model's raw features plus the transient work of
    preparing and caching one layer, the caches of every model for the costliest metric, and what the
    calibration or the bootstrap keep."""

    raw: float
    work: float
    caches: float
    extra: float
    largest: str

    @property
    def total(self) -> float:
        return self.raw + self.work + self.caches + self.extra

    def describe(self) -> str:
        return (
            f"{format_bytes(self.total)} (largest model {self.largest}: {format_bytes(self.raw)} raw; caches "
            f"{format_bytes(self.caches)}; working memory {format_bytes(self.work + self.extra)})"
        )

    def to_dict(self) -> dict:
        return {
            "estimate_bytes": int(self.total),
            "raw_bytes": int(self.raw),
            "cache_bytes": int(self.caches),
        }


def estimate_memory(grid: StreamedGrid) -> MemoryEstimate:
    """The peak memory of ``grid.run()``, from the models' store records (no tensor is read)."""
    models = grid.models()
    n = grid.n_samples()
    raw, largest, work = 0.0, "", 0.0
    for m in models:
        dims = _dims(m.info)
        size = _DTYPE_BYTES.get(str(m.info.get("storage_dtype") or m.info.get("dtype") or "float32"), 4)
        need = float(n * sum(dims) * size)
        if size >= 4:  # the exact quantile's selection copies |x| of the whole model as float32
            need *= 2
        if need > raw:
            raw, largest = need, m.name
        work = max(work, 3 * 4.0 * n * max(dims) + 8.0 * n * n)
    caches = 0.0
    controls = max(1, len(grid.controls) + 1)
    for metric in grid.metrics:
        params = grid.params(metric)
        total = 0.0
        for m in grid.models(metric):
            copies = controls if m.name in grid.control_models(metric) else 1
            total += copies * sum(_cache_bytes(metric, params, n, d) for d in _dims(m.info))
            if grid.keeps_layers(metric):
                total += copies * 4.0 * n * sum(_dims(m.info))
        caches = max(caches, total)
    extra = 0.0
    if grid.calibrate:
        extra += 8.0 * n * n * 4 + 8.0 * grid.calibrate
    if grid.bootstrap:
        extra += sum(4.0 * n * max(_dims(m.info)) * min(len(_dims(m.info)), len(models)) for m in models)
    return MemoryEstimate(raw, work, caches, extra, largest)


class _Clock:
    """Wall and CPU seconds per stage."""

    def __init__(self) -> None:
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, stage: str) -> Iterator[None]:
        w, c = time.perf_counter(), time.process_time()
        try:
            yield
        finally:
            self.wall[stage] += time.perf_counter() - w
            self.cpu[stage] += time.process_time() - c

    def to_dict(self) -> dict:
        return {s: {"wall_s": round(self.wall[s], 3), "cpu_s": round(self.cpu[s], 3)} for s in STAGES}


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@dataclass
class StreamedGrid(PairGrid):
    """:class:`~prh.align.engine.PairGrid` over models whose features are read one at a time.

    ``models_x`` / ``models_y`` are tensor-free stand-ins (``ModelFeatures(name, [], info)``, ``info`` the store's
    record with ``n`` and ``layer_dims``); ``sources`` maps each name to a callable that yields its prepared layers
    one by one (e.g. from the feature store). Everything else is as in ``PairGrid`` — and so are the results.
    """

    sources: dict[str, LayerSource] = field(default_factory=dict)
    #: optional ``check(name)`` run for every model before anything is computed (e.g. read and verify its stored
    #: file once), so that a damaged file fails the run at once instead of minutes into it
    check: Callable[[str], None] | None = None

    # -- the plan, without tensors ----------------------------------------------------------------------------
    def models(self, metric: str | None = None) -> list[ModelFeatures]:
        """The models of ``metric``'s pairs (default: every model), in order of first use."""
        pairs = self.pairs(metric) if metric is not None else self.pairs(self.metrics[0])
        out: dict[str, ModelFeatures] = {}
        for x, y in pairs:
            out.setdefault(x.name, x)
            out.setdefault(y.name, y)
        if metric is None:
            for m in self.models_x + (self.models_y or []):
                out.setdefault(m.name, m)
        return list(out.values())

    def n_samples(self) -> int:
        values = {int(m.info.get("n") or 0) for m in self.models()}
        if len(values) != 1 or 0 in values:
            raise InputError(f"all models need the same number of samples; got N in {sorted(values)}.")
        return values.pop()

    def params(self, metric: str) -> dict:
        return metric_spec(metric).check_kwargs(self.n_samples(), **self._metric_kwargs(metric))

    def control_models(self, metric: str) -> set[str]:
        """Names of the models whose rows the controls shuffle (the language side of cross-modal pairs)."""
        if not self.controls:
            return set()
        out = set()
        for x, y in self.pairs(metric):
            if x.modality != y.modality and "language" in (x.modality, y.modality):
                out.add(x.name if x.modality == "language" else y.name)
        return out

    def keeps_layers(self, metric: str) -> bool:
        """The prepared layers stay in memory with the caches: the calibration of ``metric`` recomputes caches from
        permuted layers (no re-indexing rule), or held-out selection re-caches halves of the items."""
        if self.config.select == "held-out":
            return True
        return bool(self.calibrate) and metric_spec(metric).permute_cache is None

    # -- running ----------------------------------------------------------------------------------------------
    def run(self, progress: bool = True) -> Results:
        """Score every pair for every metric, streaming the models; returns :class:`~prh.align.engine.Results`."""
        if not self.models_x:
            raise InputError("models_x is empty; give at least one model.")
        missing = [m.name for m in self.models() if m.name not in self.sources]
        if missing:
            raise InputError(f"no layer source for model(s) {missing}.")
        n = self.n_samples()
        estimate = estimate_memory(self)
        require_memory(
            estimate.total,
            f"the pair grid of {len(self.models())} models ({', '.join(self.metrics)})",
            "score fewer models at once (e.g. --models-y with a smaller set) or fewer metrics per run",
            self.device,
        )
        available = available_bytes(self.device)
        clock = _Clock()
        if self.check is not None:
            with clock.stage("check"):
                for model in self.models():
                    self.check(model.name)
        bars = _Bars(self, progress)
        bars.note(
            f"memory: estimated peak {estimate.describe()}"
            + (f" of {format_bytes(available)} available (budget {HEADROOM:.0%})" if available else "")
        )
        start = time.perf_counter()
        real_rows: list[dict] = []
        control_rows: list[dict] = []
        real_grids: dict = {}
        control_grids: dict = {}
        wanted_intervals: list[tuple[dict, str, str, ModelFeatures, ModelFeatures, tuple[int, int]]] = []
        try:
            for metric in self.metrics:
                kw = self._metric_kwargs(metric)
                caches = self._caches(metric, kw, clock, bars)
                jobs = [("none", x, y) for x, y in self.pairs(metric)]
                for control in self.controls:
                    jobs += [
                        (control, x, y)
                        for x, y in self.pairs(metric)
                        if x.modality != y.modality and "language" in (x.modality, y.modality)
                    ]
                for control, x, y in jobs:
                    cx, cy = caches[(control, x.name)], caches[(control, y.name)]
                    with clock.stage("grid"):
                        result = sweep_caches(cx, cy)
                    bars.update("grid")
                    row = self._row(metric, control, x, y, n, result)
                    if self.calibrate or self.bootstrap:
                        row.update(dict.fromkeys(STATS_COLUMNS, float("nan")))
                        if self.wants_statistics(metric, x, y):
                            if self.calibrate:
                                with clock.stage("calibration"):
                                    row.update(self.calibration(metric, kw, cx, cy, result))
                                bars.update("calibration")
                            if self.bootstrap:
                                wanted_intervals.append((row, metric, control, x, y, result.best_layers))
                    if self.config.select == "held-out":
                        with clock.stage("calibration"):
                            row.update(self._held_out(metric, kw, cx, cy))
                    (real_rows if control == "none" else control_rows).append(row)
                    grids = real_grids if control == "none" else control_grids
                    grids[Results.grid_key(metric, control, x.name, y.name)] = result.scores
                caches.clear()
            if wanted_intervals:
                self._intervals(wanted_intervals, clock, bars)
        finally:
            bars.close()
        rows = real_rows + control_rows
        columns = TABLE_COLUMNS + (list(STATS_COLUMNS) if (self.calibrate or self.bootstrap) else [])
        columns += HELD_OUT_COLUMNS if self.config.select == "held-out" else []
        import pandas as pd

        table = pd.DataFrame(rows, columns=columns)
        provenance = self._provenance(n, time.perf_counter() - start)
        provenance["stages"] = clock.to_dict()
        provenance["memory"] = {
            **estimate.to_dict(),
            "available_bytes": available,
            "peak_rss_bytes": peak_rss_bytes(),
        }
        return Results(table, {**real_grids, **control_grids}, provenance)

    def _caches(
        self, metric: str, kw: dict, clock: _Clock, bars: _Bars
    ) -> dict[tuple[str, str], LayerCaches]:
        """``{(control, model name): LayerCaches}`` of every model of ``metric``'s pairs, one model read at a time;
        ``control`` is ``"none"`` or a control whose permutation the model's rows get."""
        out: dict[tuple[str, str], LayerCaches] = {}
        shuffled = self.control_models(metric)
        keep = self.keeps_layers(metric)
        for model in self.models(metric):
            perms = {"none": None}
            if model.name in shuffled:
                perms.update(self.controls)
            built: dict[str, list] = {c: [] for c in perms}
            kept: dict[str, list] = {c: [] for c in perms}
            params: dict = {}
            layers = iter(self.sources[model.name]())
            while True:
                with clock.stage("load"):
                    layer = next(layers, None)
                if layer is None:
                    break
                for control, perm in perms.items():
                    x = layer if perm is None else layer[perm]
                    with clock.stage("caches"):
                        cache = cache_layers([x], metric, name=model.name, device=self.device, **kw)
                    params = cache.params
                    built[control].append(cache.caches[0])
                    if keep:
                        kept[control].append(cache.layers[0])
                    bars.update("caches")
                del layer
            release_freed_memory()
            bars.update("load")
            if not built["none"]:
                raise InputError(f"model {model.name!r} has no layers.")
            n = self.n_samples()
            device = torch.device(self.device)
            for control in perms:
                out[(control, model.name)] = LayerCaches(
                    metric, params, n, built[control], device, kept[control] if keep else None
                )
            for (
                control
            ) in self.controls:  # models without a shuffled copy serve the control pairs as they are
                out.setdefault((control, model.name), out[("none", model.name)])
        return out

    def _intervals(self, wanted: list, clock: _Clock, bars: _Bars) -> None:
        """Bootstrap intervals of the best layer pairs: each model is read once more, keeping only its needed
        layers (permuted as its control pairs were)."""
        needed: dict[str, set[int]] = {}
        for _, _, _, x, y, (bx, by) in wanted:
            needed.setdefault(x.name, set()).add(bx)
            needed.setdefault(y.name, set()).add(by)
        layers: dict[tuple[str, int], torch.Tensor] = {}
        for name, indices in needed.items():
            with clock.stage("load"):
                for i, layer in enumerate(self.sources[name]()):
                    if i in indices:
                        layers[(name, i)] = layer
            release_freed_memory()
        for row, metric, control, x, y, (bx, by) in wanted:
            a, b = layers[(x.name, bx)], layers[(y.name, by)]
            if control != "none":
                perm = self.controls[control]
                a = a[perm] if x.modality == "language" else a
                b = b[perm] if y.modality == "language" else b
            with clock.stage("bootstrap"):
                row.update(self.interval(metric, self._metric_kwargs(metric), a, b))
            bars.update("bootstrap")


class _Bars:
    """One tqdm bar per stage, with counts, on a terminal; elsewhere (a log file, a pipe) one plain line per stage
    at the end (``stage load: 29/29 models``); nothing when ``progress`` is False."""

    UNITS = {"load": "model", "caches": "layer", "grid": "pair", "calibration": "pair", "bootstrap": "pair"}

    def __init__(self, grid: StreamedGrid, progress: bool) -> None:
        self.bars: dict[str, Any] = {}
        self.counts: dict[str, list[int]] = {}
        self.progress = progress
        if not progress:
            return
        totals = dict.fromkeys(self.UNITS, 0)
        jobs = grid.plan()
        for metric in grid.metrics:
            shuffled = grid.control_models(metric)
            by_name = {m.name: m for m in grid.models(metric)}
            for m in by_name.values():
                totals["load"] += 1
                copies = 1 + (len(grid.controls) if m.name in shuffled else 0)
                totals["caches"] += len(_dims(m.info)) * copies
            mine = [j for j in jobs if j[0] == metric]
            totals["grid"] += len(mine)
            n_stats = sum(grid.wants_statistics(metric, by_name[j[2]], by_name[j[3]]) for j in mine)
            totals["calibration"] += n_stats if grid.calibrate else 0
            totals["bootstrap"] += n_stats if grid.bootstrap else 0
        self.counts = {stage: [0, total] for stage, total in totals.items() if total}
        if not sys.stderr.isatty():
            return
        from tqdm.auto import tqdm

        for position, (stage, (_, total)) in enumerate(self.counts.items()):
            self.bars[stage] = tqdm(
                total=total,
                desc=f"{stage:<11}",
                unit=self.UNITS[stage],
                position=position,
                dynamic_ncols=True,
            )

    def note(self, text: str) -> None:
        if self.progress:
            print(text, file=sys.stderr, flush=True)

    def update(self, stage: str) -> None:
        if stage in self.counts:
            self.counts[stage][0] += 1
        bar = self.bars.get(stage)
        if bar is not None:
            bar.update(1)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()
        if self.progress and not self.bars:
            for stage, (done, total) in self.counts.items():
                print(f"stage {stage}: {done}/{total} {self.UNITS[stage]}s", file=sys.stderr, flush=True)
