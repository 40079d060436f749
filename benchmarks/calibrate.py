"""Benchmark: K=1000 layer-aggregated permutation calibration vs ONE per-pair-loop sweep of the same grid.

One run, same random data: N=1024 samples, model X with 25 layers of 4096-d (an LLM), model Y with 13 layers of
768-d (a ViT), prepared with prh.prepare; mutual_knn with k=10.

* loop  : one sweep with the reference's algorithm, written out here: for each of the 25 x 13 layer pairs,
          L2-normalise both layers, compute both Gram matrices, fill the diagonal, full argsort, take the top k,
          build the two dense (N, N) masks and count the shared neighbours.
* calib : prh.stats.calibrate_sweep(X, Y, "mutual_knn", K=1000, aggregate="max"): the observed sweep plus 1000
          permuted sweeps (the full 25 x 13 grid for every permutation), end to end including the per-layer caches.

Also times calibrate_sweep for unbiased_cka and cknna (k=10) at --K-other permutations (default 1000) and prints
them beside the floor of the CKA family's null:

* floor : K x (one gather of Y's 13 permuted (N, N) centred kernels + one (25, N*N) x (N*N, 13) product), the
          work of one permuted grid of unbiased CKA computed as one batched product over all layer pairs: the
          fastest of 4 timed batches of 4 permutations (numpy's row gather, torch's matmul), scaled to K.

Usage: python benchmarks/calibrate.py [--n 1024] [--K 1000] [--K-other 1000] [--loop-pairs 325] [--threads 2]
       [--clock wall|cpu]  (on a shared machine: --threads 1 --clock cpu, the work done by this process)
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
from prh._sweep import LayerCaches, cache_layers
from prh.stats import calibrate_sweep
from prh.stats.permute import random_permutations

#: The clocks of ``--clock``: wall time, or the process's CPU time (with one thread, the work done, unaffected by
#: other jobs competing for the cores of a shared machine).
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
now = CLOCKS["wall"]


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
    start = now()
    done = 0
    for i in range(lx):
        for j in range(ly):
            if done == pairs:
                break
            grid[i, j] = reference_mutual_knn(x[:, i], y[:, j], k)
            done += 1
    return now() - start, grid


def kernel_floor(cx: LayerCaches, cy: LayerCaches, K: int, timed: int = 16, batch: int = 4) -> float:
    """Seconds for K permuted unbiased-CKA grids at the floor: per permutation, gather Y's permuted (N, N) centred
    kernels (all layers at once, one row gather of an (N*N, Ly) table) and multiply by X's stacked (Lx, N*N).
    The fastest of ``timed / batch`` timed batches, scaled to K (a lower bound that other jobs cannot inflate)."""
    n = cx.n
    left = torch.stack([c.centered.reshape(-1) for c in cx.caches])
    table = torch.stack([c.centered for c in cy.caches], dim=-1).reshape(n * n, len(cy.caches)).numpy()
    perms = random_permutations(n, timed, torch.Generator().manual_seed(0))
    best = float("inf")
    for b0 in range(0, timed, batch):
        start = now()
        cols = perms[b0 : b0 + batch].T.contiguous()  # (N, B)
        index = (cols[:, None, :] * n + cols[None, :, :]).reshape(-1).numpy()  # (N*N*B,)
        right = torch.from_numpy(np.take(table, index, axis=0)).view(n * n, -1)
        left @ right
        best = min(best, (now() - start) / cols.shape[1])
    return best * K


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--K", type=int, default=1000)
    parser.add_argument("--K-other", type=int, default=1000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--loop-pairs", type=int, default=325, help="pairs of the loop to time (325 = all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-other", action="store_true")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="wall time, or process CPU time (use with --threads 1 on a machine shared with other jobs)",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    global now  # noqa: PLW0603 - one switch for every timing of the run
    now = CLOCKS[args.clock]
    try:  # numpy's BLAS (the Gram matrices) gets the same number of threads as torch
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)
    except ImportError:
        pass

    x = make_model(args.n, 25, 4096, 0)
    y = make_model(args.n, 13, 768, 1)
    total_pairs = 25 * 13
    pairs = min(args.loop_pairs, total_pairs)

    t_loop, loop_grid = loop_sweep(x, y, args.k, pairs)
    t_loop_full = t_loop * total_pairs / pairs

    start = now()
    res = calibrate_sweep(x, y, "mutual_knn", K=args.K, k=args.k)
    t_calib = now() - start
    start = now()
    cache_layers(x, "mutual_knn", k=args.k)
    cache_layers(y, "mutual_knn", k=args.k)
    t_cache = now() - start
    done = ~np.isnan(loop_grid)
    agree = float(np.abs(res.sweep.scores[done] - loop_grid[done]).max())

    print(
        f"machine: {platform.machine()} {platform.processor() or ''} cpus={os.cpu_count()} "
        f"torch threads={torch.get_num_threads()} torch {torch.__version__} python {platform.python_version()}, "
        f"clock: {args.clock}"
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
        caches = {}
        for metric, kw in (("unbiased_cka", {}), ("cknna", {"k": args.k})):
            start = now()
            caches[metric] = (cache_layers(x, metric, **kw), cache_layers(y, metric, **kw))
            caches[metric] += (now() - start,)
        t_floor = kernel_floor(*caches["unbiased_cka"][:2], args.K_other)
        print(
            f"| floor of the CKA family's null, K={args.K_other}: gather of the 13 permuted N x N kernels + one "
            f"(25, N^2) x (N^2, 13) product per permutation | {t_floor:.1f} | {t_floor / t_loop_full:.3f} |"
        )
        for metric, (cx, cy, t_cache) in caches.items():
            start = now()
            calibrate_sweep(cx, cy, metric, K=args.K_other)
            t_null = now() - start
            t = t_cache + t_null
            print(
                f"| calibrate_sweep {metric}, K={args.K_other}, aggregate=max: caches {t_cache:.1f} s + observed and "
                f"null grids {t_null:.1f} s ({t_null / t_floor:.2f}x the floor) | {t:.1f} | {t / t_loop_full:.3f} |"
            )
    print()
    print(f"speed-up of K={args.K} calibration over one loop sweep: {t_loop_full / t_calib:.1f}x")


if __name__ == "__main__":
    main()
