"""Benchmark: prh.sweep vs the reference's per-pair loop vs the Gram-matrix floor, and the exact clamp.

All timings come from one run on the same random data: N=1024 samples, model X with 25 layers of 4096-d
(an LLM), model Y with 13 layers of 768-d (a ViT), prepared with prh.prepare.

* ours  : prh.sweep (per-layer caches, batched grid), median of 3 runs
* loop  : oracles/reference_impl.compute_score, the reference's algorithm (normalise both layers, recompute Gram matrices,
          full argsort / dense HSIC for every one of the 25 x 13 pairs)
* floor : the 38 Gram matrices X_i X_i^T alone, the least any exact sweep must compute; timed both with torch.mm
          and with prh.metrics.kernels.inner_products (symmetric rank-k update, half the multiply-adds), and the
          ratio ours/floor uses the faster one

The clamp section compares prh.prepare's selection-based exact quantile with the reference's full sort, each in a
fresh subprocess so that peak memory (ru_maxrss) is measured cleanly.

Usage: python benchmarks/sweep.py [--n 1024] [--metrics mutual_knn,cknna,unbiased_cka] [--skip-clamp]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

import prh

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "oracles"))
import reference_impl as reference  # noqa: E402  (the oracle shared with the tests: the reference's per-pair loop)
from prh.metrics.kernels import inner_products


def floor_label() -> str:
    return (
        "prh's inner_products (BLAS syrk via numpy on CPU)" if not torch.cuda.is_available() else "torch.mm"
    )


def cpu_name() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux), with its core count."""
    try:
        with open("/proc/cpuinfo") as fh:
            name = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        name = platform.processor() or platform.machine()
    return f"{name} ({os.cpu_count()} cores)"


def make_model(n: int, layers: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return prh.prepare(torch.randn(n, layers, dim, generator=g))


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def gram_floor(x: torch.Tensor, y: torch.Tensor, product) -> float:
    """Seconds to compute the 38 Gram matrices with ``product(layer) -> layer @ layer.T`` (layers pre-copied)."""
    layers = [model[:, i].contiguous() for model in (x, y) for i in range(model.shape[1])]
    start = time.perf_counter()
    for layer in layers:
        _ = product(layer)
    return time.perf_counter() - start


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


def clamp_child(method: str, n: int) -> None:
    """Run in a subprocess: build the (n, 25, 4096) tensor, clamp it, print time and extra peak memory (MiB).

    Extra peak = the highest resident memory seen while clamping (sampled every 2 ms) minus the resident memory
    just before, so it counts the clamp's temporaries and its output tensor.
    """
    import threading

    x = torch.randn(n, 25, 4096, generator=torch.Generator().manual_seed(0))
    base = _rss_mib()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss_mib())
            time.sleep(0.002)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    start = time.perf_counter()
    if method == "ours":
        out = prh.prepare(x, q=0.95, normalize=False)
    else:
        out = reference.remove_outliers_sort(x, 0.95)
    elapsed = time.perf_counter() - start
    done.set()
    watcher.join()
    peak[0] = max(peak[0], _rss_mib())
    print(json.dumps({"time_s": elapsed, "extra_peak_mib": peak[0] - base, "max": float(out.abs().max())}))


def run_clamp(n: int) -> dict:
    results = {}
    for method in ("ours", "sort"):
        proc = subprocess.run(
            [sys.executable, __file__, "--clamp-child", method, "--n", str(n)],
            capture_output=True,
            text=True,
            check=True,
        )
        results[method] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--metrics", default="mutual_knn,cknna,unbiased_cka")
    parser.add_argument("--skip-clamp", action="store_true")
    parser.add_argument("--clamp-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.clamp_child:
        clamp_child(args.clamp_child, args.n)
        return

    print(
        f"machine: {cpu_name()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, N={args.n}, X 25x4096, Y 13x768"
    )
    x = make_model(args.n, 25, 4096, 0)
    y = make_model(args.n, 13, 768, 1)
    floor_mm = gram_floor(x, y, lambda layer: layer @ layer.T)
    floor = sorted(gram_floor(x, y, inner_products) for _ in range(3))[1]
    print(
        f"Gram floor (38 Gram matrices): {floor:.2f} s with {floor_label()}, {floor_mm:.2f} s with torch.mm"
    )
    print("(ours/floor is measured against the faster of the two: the least any exact sweep must pay)\n")
    floor = min(floor, floor_mm)
    header = f"{'metric':<14}{'ours s':>9}{'loop s':>10}{'loop/ours':>11}{'ours/floor':>12}{'max |diff|':>12}"
    print(header)
    print("-" * len(header))
    xs, ys = list(x.unbind(1)), list(y.unbind(1))
    for metric in args.metrics.split(","):
        kw = {"k": 10} if metric in ("mutual_knn", "cknna") else {}
        runs = [timed(prh.sweep, x, y, metric, **kw) for _ in range(3)]
        t_ours, ours = sorted(runs, key=lambda r: r[0])[1]  # median of 3 (the loop takes ~40 s: timed once)
        t_loop, (grid, _, _) = timed(reference.compute_score, xs, ys, metric, **kw)
        diff = float(np.abs(ours.scores - grid).max())
        print(
            f"{metric:<14}{t_ours:>9.2f}{t_loop:>10.2f}{t_loop / t_ours:>10.1f}x{t_ours / floor:>11.2f}x{diff:>12.1e}"
        )

    if not args.skip_clamp:
        c = run_clamp(args.n)
        print(f"\nexact clamp of a ({args.n}, 25, 4096) tensor at q=0.95")
        print(f"{'method':<22}{'time s':>9}{'extra peak MiB':>16}")
        print(f"{'prh.prepare (select)':<22}{c['ours']['time_s']:>9.2f}{c['ours']['extra_peak_mib']:>16.0f}")
        print(f"{'full sort (reference)':<22}{c['sort']['time_s']:>9.2f}{c['sort']['extra_peak_mib']:>16.0f}")
        same = c["ours"]["max"] == c["sort"]["max"]
        print(f"speed-up {c['sort']['time_s'] / c['ours']['time_s']:.1f}x, same threshold: {same}")


if __name__ == "__main__":
    main()
