"""Gallery-size stress test: time and peak memory of layer sweeps as N grows.

Model X: 4 layers x 768-d, model Y: 4 layers x 384-d (seeded data with shared structure, L2-normalised rows), the
shapes of a ViT-B vs a MiniLM. For each N and each case the sweep runs in a fresh subprocess, so its peak resident
memory (``ru_maxrss`` minus the process's peak after building the data) is its own. Cases:

* ``mutual_knn`` (k = 10): exact neighbours from row blocks;
* ``mutual_knn/approximate``: the same with ``neighbors="approximate"`` (FAISS HNSW, needs faiss-cpu), with the
  lowest measured recall over the 8 layers, and its largest score difference from the exact grid;
* ``cka`` / ``unbiased_cka`` with ``path="features"`` (no N x N matrix) and, where it still fits, ``path="gram"``
  (one centred (N, N) float64 kernel per layer) — the ratio gram / features is measured in the same run;
* optionally ``calibrate`` (``--calibrate K``): a K-permutation null of the unbiased CKA feature path.

Prints one table (seconds, peak MiB, and for each case the growth exponent fitted to log time vs log N) and checks
that the two CKA paths agree wherever both ran. Usage::

    python benchmarks/scale.py                      # N = 1024 4096 16384 65536
    python benchmarks/scale.py --sizes 1024 4096 --gram-max 8192 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time

_CHILD = r"""
import json, resource, sys, time
import torch, prh
n, case, threads = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
base = torch.randn(n, 64, generator=g)
def model(d, seed):
    gg = torch.Generator().manual_seed(seed)
    return [torch.nn.functional.normalize(base @ torch.randn(64, d, generator=gg) + torch.randn(n, d, generator=gg), dim=1)
            for _ in range(4)]
x, y = model(768, 1), model(384, 2)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
extra = {}
if case == "mutual_knn":
    out = prh.sweep(x, y, "mutual_knn", k=10).scores
elif case == "mutual_knn/approximate":
    res = prh.sweep(x, y, "mutual_knn", k=10, neighbors="approximate")
    out = res.scores
    extra["recall"] = min(d["recall"] for side in res.diagnostics.values() for d in side)
elif case.startswith("calibrate:"):
    K = int(case.split(":")[1])
    out = prh.stats.calibrate_sweep(x, y, "unbiased_cka", K=K, alpha=0.5 if K < 19 else 0.05, path="features").sweep.scores
else:
    metric, path = case.split("/")
    out = prh.sweep(x, y, metric, path=path).scores
seconds = time.perf_counter() - t
total = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "peak_mib": total - before / 1024, "process_mib": total, "grid": out.tolist(), **extra}))
"""


def run(n: int, case: str, threads: int, timeout: float) -> dict | None:
    try:
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(n), case, str(threads)],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout after {timeout:.0f} s"}
    if out.returncode != 0:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:120]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def exponent(points: list[tuple[int, float]]) -> float | None:
    """Least-squares slope of log(seconds) against log(N)."""
    pts = [(math.log(n), math.log(s)) for n, s in points if s > 0]
    if len(pts) < 2:
        return None
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    sxx = sum((p[0] - mx) ** 2 for p in pts)
    return sum((p[0] - mx) * (p[1] - my) for p in pts) / sxx if sxx else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[1024, 4096, 16384, 65536])
    ap.add_argument("--gram-max", type=int, default=8192, help="largest N for the (N, N) Gram path")
    ap.add_argument("--knn-max", type=int, default=65536, help="largest N for mutual_knn")
    ap.add_argument("--calibrate", type=int, default=0, help="also time a K-permutation feature-path null")
    ap.add_argument("--cases", default=None, help="comma-separated subset of the cases (default: all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", default=None, help="also write the raw results here")
    args = ap.parse_args()

    cases = [
        "mutual_knn",
        "mutual_knn/approximate",
        "cka/features",
        "cka/gram",
        "unbiased_cka/features",
        "unbiased_cka/gram",
    ]
    if args.calibrate:
        cases.append(f"calibrate:{args.calibrate}")
    if args.cases:
        wanted = [c.strip() for c in args.cases.split(",") if c.strip()]
        unknown = sorted(set(wanted) - set(cases))
        if unknown:
            ap.error(f"unknown case(s) {unknown}; choose from {cases}")
        cases = [c for c in cases if c in wanted]
    results: dict[str, dict[int, dict]] = {c: {} for c in cases}
    for n in args.sizes:
        for case in cases:
            if case.endswith("/gram") and n > args.gram_max:
                continue
            if case.startswith("mutual_knn") and n > args.knn_max:
                continue
            started = time.perf_counter()
            res = run(n, case, args.threads, args.timeout)
            results[case][n] = res
            status = res.get("error") or (
                f"{res['seconds']:.2f} s, peak {res['peak_mib']:.0f} MiB above the data, "
                f"process peak {res['process_mib']:.0f} MiB"
                + (f", recall {res['recall']:.3f}" if "recall" in res else "")
            )
            print(f"  N={n:>7} {case:<24} {status}  (wall {time.perf_counter() - started:.0f} s)", flush=True)

    print()
    print(f"torch {__import__('torch').__version__}, {args.threads} threads; X 4 x 768, Y 4 x 384")
    print("cells: seconds / peak MiB above the data (the whole process's peak resident MiB, data included)")
    header = "| case | " + " | ".join(f"N={n:,}" for n in args.sizes) + " | growth exponent |"
    print(header)
    print("|" + "---|" * (len(args.sizes) + 2))
    for case in cases:
        cells, points = [], []
        for n in args.sizes:
            res = results[case].get(n)
            if res is None:
                cells.append("—")
            elif "error" in res:
                cells.append(res["error"][:40])
            else:
                cells.append(
                    f"{res['seconds']:.2f} s / {res['peak_mib']:.0f} MiB ({res['process_mib']:,.0f})"
                )
                points.append((n, res["seconds"]))
        slope = exponent(points)
        print(f"| {case} | " + " | ".join(cells) + f" | {'—' if slope is None else f'{slope:.2f}'} |")
    print()
    for metric in ("cka", "unbiased_cka"):
        for n in args.sizes:
            g = results.get(f"{metric}/gram", {}).get(n)
            f = results.get(f"{metric}/features", {}).get(n)
            if g and f and "error" not in g and "error" not in f:
                diff = max(abs(a - b) for ra, rb in zip(g["grid"], f["grid"]) for a, b in zip(ra, rb))
                print(
                    f"{metric} N={n:,}: gram / features time = {g['seconds'] / f['seconds']:.1f}x, "
                    f"peak {g['peak_mib']:.0f} vs {f['peak_mib']:.0f} MiB, max |grid difference| = {diff:.1e}"
                )
    for n in args.sizes:
        exact = results.get("mutual_knn", {}).get(n)
        approx = results.get("mutual_knn/approximate", {}).get(n)
        if exact and approx and "error" not in exact and "error" not in approx:
            diff = max(abs(a - b) for ra, rb in zip(exact["grid"], approx["grid"]) for a, b in zip(ra, rb))
            print(
                f"mutual_knn N={n:,}: exact / approximate time = {exact['seconds'] / approx['seconds']:.1f}x, "
                f"lowest recall {approx['recall']:.3f}, max |grid difference| = {diff:.3f}"
            )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({c: {str(n): r for n, r in v.items()} for c, v in results.items()}, fh)


if __name__ == "__main__":
    main()
