"""Benchmark: K=1000 layer-aggregated permutation calibration vs ONE per-pair-loop sweep of the same grid.

One run, same random data: N=1024 samples, model X with 25 layers of 4096-d (an LLM), model Y with 13 layers of
768-d (a ViT), prepared with prh.prepare; mutual_knn with k=10.

* loop  : one sweep with the reference's algorithm, written out here: for each of the 25 x 13 layer pairs,
          L2-normalise both layers, compute both Gram matrices, fill the diagonal, full argsort, take the top k,
          build the two dense (N, N) masks and count the shared neighbours.
* calib : prh.stats.calibrate_sweep(X, Y, "mutual_knn", K=1000, aggregate="max"): the observed sweep plus 1000
          permuted sweeps (the full 25 x 13 grid for every permutation), end to end including the per-layer caches.

Also times calibrate_sweep for cknna and unbiased_cka at a smaller K (default 100).

Usage: python benchmarks/calibrate.py [--n 1024] [--K 1000] [--K-other 100] [--loop-pairs 325] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

import prh
from prh._sweep import cache_layers
from prh.stats import calibrate_sweep


def make_model(n: int, layers: int, dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return prh.prepare(torch.randn(n, layers, dim, generator=g))


def reference_knn(feats: torch.Tensor, k: int) -> torch.Tensor:
    """The reference's neighbour search: normalise, Gram, diagonal filled, full argsort, top k."""
    feats = F.normalize(feats, p=2, dim=-1)
    sim = feats @ feats.T
    sim.fill_diagonal_(-1e8)
    return sim.argsort(dim=1, descending=True)[:, :k]


def reference_mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """The reference's mutual kNN of one layer pair (dense masks)."""
    n = a.shape[0]
    knn_a, knn_b = reference_knn(a, k), reference_knn(b, k)
    rows = torch.arange(n).unsqueeze(1)
    mask_a = torch.zeros(n, n)
    mask_b = torch.zeros(n, n)
    mask_a[rows, knn_a] = 1.0
    mask_b[rows, knn_b] = 1.0
    return ((mask_a * mask_b).sum(dim=1) / k).mean().item()


def loop_sweep(x: torch.Tensor, y: torch.Tensor, k: int, pairs: int) -> tuple[float, np.ndarray]:
    """Time the per-pair loop over the first ``pairs`` layer pairs (all of them by default)."""
    lx, ly = x.shape[1], y.shape[1]
    grid = np.full((lx, ly), np.nan)
    start = time.perf_counter()
    done = 0
    for i in range(lx):
        for j in range(ly):
            if done == pairs:
                break
            grid[i, j] = reference_mutual_knn(x[:, i], y[:, j], k)
            done += 1
    return time.perf_counter() - start, grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--K", type=int, default=1000)
    parser.add_argument("--K-other", type=int, default=100)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--loop-pairs", type=int, default=325, help="pairs of the loop to time (325 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-other", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    x = make_model(args.n, 25, 4096, 0)
    y = make_model(args.n, 13, 768, 1)
    total_pairs = 25 * 13
    pairs = min(args.loop_pairs, total_pairs)

    t_loop, loop_grid = loop_sweep(x, y, args.k, pairs)
    t_loop_full = t_loop * total_pairs / pairs

    start = time.perf_counter()
    res = calibrate_sweep(x, y, "mutual_knn", K=args.K, k=args.k)
    t_calib = time.perf_counter() - start
    start = time.perf_counter()
    cache_layers(x, "mutual_knn", k=args.k)
    cache_layers(y, "mutual_knn", k=args.k)
    t_cache = time.perf_counter() - start
    done = ~np.isnan(loop_grid)
    agree = float(np.abs(res.sweep.scores[done] - loop_grid[done]).max())

    print(
        f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
        f"torch threads={torch.get_num_threads()} torch {torch.__version__} python {platform.python_version()}"
    )
    print(
        f"data: N={args.n}, X 25 layers x 4096-d, Y 13 layers x 768-d (random, prepared), mutual_knn k={args.k}"
    )
    print(f"observed grid vs loop: max |diff| = {agree:.2e} over {int(done.sum())} pairs")
    print()
    print("| what | time (s) | ratio to one loop sweep |")
    print("|---|---:|---:|")
    label = "one per-pair-loop sweep (reference algorithm, 325 pairs)"
    if pairs < total_pairs:
        label += f" — {pairs} pairs timed, extrapolated"
    print(f"| {label} | {t_loop_full:.1f} | 1.00 |")
    print(
        f"| calibrate_sweep mutual_knn, K={args.K}, aggregate=max (observed + {args.K} permuted 25x13 grids) "
        f"| {t_calib:.1f} | {t_calib / t_loop_full:.3f} |"
    )
    print(
        f"| (of which the 38 per-layer neighbour caches, measured separately) | {t_cache:.1f} | {t_cache / t_loop_full:.3f} |"
    )
    if not args.skip_other:
        for metric, kw in (("unbiased_cka", {}), ("cknna", {"k": args.k})):
            start = time.perf_counter()
            calibrate_sweep(x, y, metric, K=args.K_other, **kw)
            t = time.perf_counter() - start
            print(
                f"| calibrate_sweep {metric}, K={args.K_other}, aggregate=max | {t:.1f} | {t / t_loop_full:.3f} |"
            )
    print()
    print(f"speed-up of K={args.K} calibration over one loop sweep: {t_loop_full / t_calib:.1f}x")


if __name__ == "__main__":
    main()
