"""Benchmark: the demo's alignment stage through the real pipeline vs the floor of the same work done directly.

On the features `prh demo` stored (the 8 offline models on 1,024 OpenMoji pairs by default):

* pipeline : ``prh.align.run_alignment`` exactly as `prh demo` calls it — metrics mutual_knn, cknna,
  unbiased_cka (k=10) over every model pair and all layer pairs, K=1000 permutation calibration and B=200
  half-size subsamples of the cross-modal mutual_knn pairs, the shuffled-caption control — into a fresh result
  cache folder (so nothing is reused from an earlier run). Its time is split into stages by timing the building
  blocks it calls (load_features, cache_layers, sweep_caches, calibrate_sweep, bootstrap_ci); a call on a
  shuffled (control) model counts to the control stage; what no block accounts for is "other" (table,
  provenance, saving).
* floor : the same numbers computed directly with the library's building blocks, each piece of work once:
  ``FeatureStore.load`` + ``prh.prepare`` per model; ``prh._sweep.cache_layers`` once per (model, metric);
  ``sweep_caches`` once per model pair; ``prh.stats.calibrate_sweep`` (on those caches, reusing the observed
  sweep) and ``prh.stats.bootstrap_ci`` (on the best layers) once per cross-modal mutual_knn pair; the control:
  each language model's shuffled rows cached once per metric and the control grids once; and, like the pipeline (statistics for the cross-modal pairs and their
  controls), the calibration and subsamples of each control pair once ("control statistics").

Both give the same numbers (checked and printed: best scores, layers, p-values, τ, intervals). Stage times are the
minimum over ``--repeat`` runs of each; ratios come from one process on the same data.

Usage: python benchmarks/pipeline.py [--store prh-cache/features] [--dataset openmoji] [--n 1024]
       [--models offline] [--calibrate 1000] [--bootstrap 200] [--repeat 1] [--threads 2]
"""

from __future__ import annotations

import argparse
import contextlib
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

import prh
import prh.align.engine
import prh.align.pipeline
import prh.stats
from prh._sweep import LayerCaches, cache_layers, sweep_caches
from prh.align import AlignConfig, ModelFeatures, run_alignment, shuffled_control
from prh.errors import PrhError
from prh.metrics import spec as metric_spec

METRICS = ("mutual_knn", "cknna", "unbiased_cka")
CALIBRATED = "mutual_knn"
STAGES = ("load+prepare", "caches", "grids", "calibration", "subsampling", "control")
CONTROL = "shuffled_captions"

#: The clocks of ``--clock``: wall time, or the process's CPU time (with one thread, the work done, unaffected by
#: other jobs competing for the cores of a shared machine).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}


# ------------------------------------------------------------------------------------------------ the pipeline


class StageTimer:
    """Times the building blocks the pipeline calls, by stage; nested calls count to the outermost one."""

    def __init__(self, now: Callable[[], float]) -> None:
        self.now = now
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self.control_tensors: dict[
            int, Any
        ] = {}  # id -> shuffled layer or caches (kept alive: ids stay unique)
        self.depth = 0

    def is_control(self, *objs: Any) -> bool:
        """Whether any argument is (or was built from) a shuffled model's layers."""
        for obj in objs:
            if id(obj) in self.control_tensors:
                return True
            if isinstance(obj, LayerCaches):
                obj = obj.layers or []
            tensors = obj if isinstance(obj, (list, tuple)) else [obj]
            if any(id(t) in self.control_tensors for t in tensors if isinstance(t, torch.Tensor)):
                return True
        return False

    def wrap(self, stage: str, func: Callable, control_stage: str | None = None) -> Callable:
        def timed(*args: Any, **kwargs: Any) -> Any:
            if self.depth:
                return func(*args, **kwargs)
            name = control_stage if control_stage and self.is_control(*args[:2]) else stage
            self.depth += 1
            start = self.now()
            try:
                out = func(*args, **kwargs)
                if name == control_stage and isinstance(out, LayerCaches):  # caches of a shuffled model
                    self.control_tensors[id(out)] = out
                return out
            finally:
                self.seconds[name] += self.now() - start
                self.calls[name] += 1
                self.depth -= 1

        return timed

    def wrap_permuted(self, func: Callable) -> Callable:
        def permuted(model: ModelFeatures, *args: Any, **kwargs: Any) -> ModelFeatures:
            out = func(model, *args, **kwargs)
            self.control_tensors.update((id(t), t) for t in out.layers)
            return out

        return permuted


@contextlib.contextmanager
def patched(targets: list[tuple[Any, str, Callable[[Callable], Callable]]]) -> Iterator[None]:
    """Replace ``owner.name`` by ``wrap(original)`` for every target; restore them afterwards."""
    saved = []
    try:
        for owner, name, wrap in targets:
            if not hasattr(owner, name):
                raise SystemExit(
                    f"benchmarks/pipeline.py: {owner.__name__}.{name} is gone; update the stage timers to the "
                    "engine's current building blocks."
                )
            original = getattr(owner, name)
            saved.append((owner, name, original))
            setattr(owner, name, wrap(original))
        yield
    finally:
        for owner, name, original in reversed(saved):
            setattr(owner, name, original)


def demo_config(calibrate: int, bootstrap: int, seed: int) -> AlignConfig:
    """The alignment options of `prh demo`."""
    return AlignConfig(
        metrics=METRICS,
        k=10,
        calibrate=calibrate,
        calibrate_metrics=(CALIBRATED,),
        calibrate_within=False,
        bootstrap=bootstrap,
        seed=seed,
        shuffle_control=True,
    )


def run_pipeline(
    specs, store, dataset, config: AlignConfig, now: Callable[[], float]
) -> tuple[pd.DataFrame, dict[str, float], dict]:
    """The demo's call of run_alignment (fresh result cache); returns its table, stage times and call counts."""
    timer = StageTimer(now)
    engine, pipeline = prh.align.engine, prh.align.pipeline
    targets = [
        (pipeline, "load_features", lambda f: timer.wrap("load+prepare", f)),
        (engine, "cache_layers", lambda f: timer.wrap("caches", f, "control caches")),
        (engine, "sweep_caches", lambda f: timer.wrap("grids", f, "control grids")),
        (prh.stats, "calibrate_sweep", lambda f: timer.wrap("calibration", f, "control calibration")),
        (prh.stats, "bootstrap_ci", lambda f: timer.wrap("subsampling", f, "control subsampling")),
        (ModelFeatures, "permuted", timer.wrap_permuted),
    ]
    with tempfile.TemporaryDirectory(prefix="prh-bench-") as cache_dir, patched(targets):
        start = now()
        results = run_alignment(
            specs, None, store, config, dataset=dataset, progress=False, cache_dir=cache_dir
        )
        total = now() - start
    seconds = dict(timer.seconds)
    seconds["control"] = sum(seconds.get(f"control {s}", 0.0) for s in ("caches", "grids"))
    seconds["control statistics"] = sum(
        seconds.get(f"control {s}", 0.0) for s in ("calibration", "subsampling")
    )
    seconds["total"] = total
    seconds["other"] = total - sum(seconds.get(s, 0.0) for s in (*STAGES, "control statistics"))
    return results.table, seconds, dict(timer.calls)


# --------------------------------------------------------------------------------------------------- the floor


def run_floor(
    specs, store, dataset, config: AlignConfig, now: Callable[[], float]
) -> tuple[pd.DataFrame, dict[str, float]]:
    """The same numbers from the building blocks, every piece of work once; returns a table and stage times."""
    seconds: dict[str, float] = defaultdict(float)
    t = now()

    def clock(stage: str) -> None:
        nonlocal t
        end = now()
        seconds[stage] += end - t
        t = end

    layers = {s.name: prh.prepare(store.load(dataset, s.name, s.pool).layers, q=config.q) for s in specs}
    modality = {s.name: s.modality for s in specs}
    clock("load+prepare")
    names = [s.name for s in specs]
    n = layers[names[0]][0].shape[0]
    perm = shuffled_control(n, config.seed)[CONTROL]
    shuffled_layers = {
        name: [layer[perm] for layer in layers[name]] for name in names if modality[name] == "language"
    }
    clock("control")
    rows = []
    for metric in config.metrics:
        spec = metric_spec(metric)
        kw = {"k": config.k} if "k" in spec.defaults else {}
        wanted = metric in (config.calibrate_metrics or config.metrics)
        caches = {name: cache_layers(layers[name], metric, name=name, **kw) for name in names}
        clock("caches")
        pairs = [
            (a, b) for i, a in enumerate(names) for j, b in enumerate(names) if j >= i or not spec.symmetric
        ]
        sweeps = {pair: sweep_caches(caches[pair[0]], caches[pair[1]]) for pair in pairs}
        clock("grids")
        cross = [(a, b) for a, b in pairs if modality[a] != modality[b]]
        for a, b in pairs:
            stats = {}
            if wanted and (a, b) in cross:
                pair_caches, pair_layers = (caches[a], caches[b]), (layers[a], layers[b])
                stats = _statistics(
                    config,
                    metric,
                    pair_caches,
                    pair_layers,
                    sweeps[a, b],
                    clock,
                    ("calibration", "subsampling"),
                )
            rows.append(_row(metric, "none", a, b, sweeps[a, b], stats))
        # the control: the language side's rows shuffled, its caches built once (rebuilt rather than re-indexed
        # with spec.permute_cache: re-indexed kNN lists can break ties between equal similarities differently)
        shuffled = {
            name: cache_layers(rows_, metric, name=name, **kw) for name, rows_ in shuffled_layers.items()
        }
        clock("control")
        for a, b in cross:
            pair_caches = (shuffled.get(a, caches[a]), shuffled.get(b, caches[b]))
            pair_layers = (shuffled_layers.get(a, layers[a]), shuffled_layers.get(b, layers[b]))
            sweep = sweep_caches(*pair_caches)
            clock("control")
            stats = (
                {}
                if not wanted
                else _statistics(
                    config, metric, pair_caches, pair_layers, sweep, clock, ("control statistics",) * 2
                )
            )
            rows.append(_row(metric, CONTROL, a, b, sweep, stats))
    return pd.DataFrame(rows), dict(seconds)


def _statistics(
    config: AlignConfig, metric: str, caches, layers, sweep, clock, stages: tuple[str, str]
) -> dict:
    """Calibration (on the pair's caches, reusing its sweep) and subsampling (on its best layers) of one pair."""
    kw = {"k": config.k} if "k" in metric_spec(metric).defaults else {}
    out = {}
    if config.calibrate:
        cal = prh.stats.calibrate_sweep(
            *caches, metric, K=config.calibrate, alpha=config.alpha, seed=config.seed, observed=sweep, **kw
        )
        out.update(tau=cal.tau, p_value=cal.p_value, calibrated_score=cal.calibrated)
        clock(stages[0])
    if config.bootstrap:
        bx, by = sweep.best_layers
        ci = prh.stats.bootstrap_ci(
            layers[0][bx], layers[1][by], metric, B=config.bootstrap, seed=config.seed, **kw
        )
        out.update(ci_low=ci.ci_low, ci_high=ci.ci_high)
        clock(stages[1])
    return out


def _row(metric: str, control: str, a: str, b: str, result, stats: dict) -> dict:
    bx, by = result.best_layers
    return {
        "metric": metric,
        "control": control,
        "model_x": a,
        "model_y": b,
        "score": result.best,
        "best_layer_x": bx,
        "best_layer_y": by,
        **stats,
    }


# ---------------------------------------------------------------------------------------------------- checking


def compare(pipeline: pd.DataFrame, floor: pd.DataFrame) -> list[str]:
    """Lines saying whether the pipeline's and the floor's numbers agree (max |difference| per column)."""
    key = ["metric", "control", "model_x", "model_y"]
    merged = pipeline.merge(floor, on=key, how="outer", suffixes=("_pipe", "_floor"), indicator=True)
    lines = []
    missing = merged[merged["_merge"] != "both"]
    if len(missing):
        lines.append(f"rows in only one of the two: {len(missing)} (e.g. {missing[key].iloc[0].tolist()})")
    both = merged[merged["_merge"] == "both"]
    lines.append(f"rows compared: {len(both)} (pipeline {len(pipeline)}, floor {len(floor)})")
    for column in (
        "score",
        "best_layer_x",
        "best_layer_y",
        "p_value",
        "tau",
        "calibrated_score",
        "ci_low",
        "ci_high",
    ):
        a, b = both[f"{column}_pipe"].to_numpy(float), both[f"{column}_floor"].to_numpy(float)
        have = ~np.isnan(b)
        if not have.any():
            continue
        diff = np.abs(a[have] - b[have])
        diff = np.where(np.isnan(diff), np.inf, diff)
        worst = float(diff.max())
        verdict = "identical" if worst == 0 else f"max |diff| = {worst:.2e}"
        lines.append(f"{column}: {verdict} over {int(have.sum())} rows")
    return lines


# ------------------------------------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--store", type=Path, default=Path("prh-cache/features"), help="the demo's feature store"
    )
    parser.add_argument("--dataset", default="openmoji")
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--models", default="offline", help="model set or names (the demo's: offline)")
    parser.add_argument("--calibrate", type=int, default=1000, help="permutations K (the demo's: 1000)")
    parser.add_argument("--bootstrap", type=int, default=200, help="subsamples B (the demo's: 200)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeat", type=int, default=1, help="runs of each; stage times are the minimum")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or process CPU time (use with --threads 1 on a machine shared with other jobs)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    now = CLOCKS[args.clock]

    from prh.data import load_dataset
    from prh.features.store import FeatureStore
    from prh.models import availability, resolve_models

    specs = [s for s in resolve_models(args.models) if availability(s)[0]]
    dataset = load_dataset(args.dataset, n=args.n)
    store = FeatureStore(args.store)
    config = demo_config(args.calibrate, args.bootstrap, args.seed)
    pools = {s.name: s.pool for s in specs}
    try:
        store.find_many([s.name for s in specs], pools, dataset=dataset)
    except PrhError as err:
        cmd = "prh demo" + (f" --store {args.store}" if args.store != Path("prh-cache/features") else "")
        if args.dataset == "openmoji":
            cmd += f" --n {args.n}" if args.n != 1024 else ""
            if args.models != "offline":
                cmd += f" --models {args.models}"
        else:
            cmd = f"prh extract --models {args.models} --dataset {args.dataset} --n {args.n} --store {args.store}"
        sys.exit(f"stored features are missing: {err}\nMake them with: {cmd}")

    n_cross = sum(1 for i, a in enumerate(specs) for b in specs[i + 1 :] if a.modality != b.modality)
    print(
        f"{len(specs)} models ({', '.join(s.name for s in specs)}), {args.dataset} N={args.n}; metrics "
        f"{', '.join(METRICS)} (k=10); K={args.calibrate} calibration and B={args.bootstrap} subsamples of the "
        f"{n_cross} cross-modal {CALIBRATED} pairs; shuffled-caption control"
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, prh {prh.__version__}; clock: {args.clock}"
    )
    best_pipe: dict[str, float] = {}
    best_floor: dict[str, float] = {}
    calls: dict = {}
    for r in range(args.repeat):
        table_p, sec_p, calls = run_pipeline(specs, store, dataset, config, now)
        table_f, sec_f = run_floor(specs, store, dataset, config, now)
        for mine, new in ((best_pipe, sec_p), (best_floor, sec_f)):
            for stage, value in new.items():
                mine[stage] = min(mine.get(stage, np.inf), value)
        print(
            f"run {r + 1}/{args.repeat}: pipeline {sec_p['total']:.1f} s, floor {sum(sec_f.values()):.1f} s"
        )
    best_floor["total"] = sum(best_floor.get(s, 0.0) for s in (*STAGES, "control statistics"))

    print()
    print("| stage | pipeline (s) | floor (s) | pipeline / floor |")
    print("|---|---:|---:|---:|")
    rows = [*STAGES, "control statistics", "other", "total"]
    for stage in rows:
        p, f = best_pipe.get(stage, 0.0), best_floor.get(stage, 0.0)
        ratio = f"{p / f:.2f}×" if f > 0 else "—"
        label = f"**{stage}**" if stage == "total" else stage
        print(f"| {label} | {p:.2f} | {f:.2f} | {ratio} |")
    print()
    ratio = best_pipe["total"] / best_floor["total"]
    print(f"total: pipeline / floor = {ratio:.2f}× (target: within 1.5×)")
    print("calls the pipeline made: " + ", ".join(f"{k} {v}" for k, v in sorted(calls.items())))
    print()
    print("pipeline vs floor numbers:")
    for line in compare(table_p, table_f):
        print(f"  {line}")


if __name__ == "__main__":
    main()
