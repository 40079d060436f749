"""What the feature store's integrity checks cost on a load.

Writes one store entry of L layers x N x D float32 (default 25 x 1024 x 4096 = 420 MB, a 7B-class language model
on the paper's 1,024 pairs) and times, with the file in the page cache (best of R):

- ``raw``: safetensors opens every tensor, no check (what the store did before checksums; the tensors are
  memory-mapped, so this reads nothing yet);
- ``raw + touch``: the same, plus one pass over every value (a sum), so that the bytes are actually read;
- ``verified``: ``FeatureStore.load`` the first time in a process -- header vs sidecar, sha256 of every tensor
  (hashed in threads while the next tensor is read), finite check;
- ``cached``: ``FeatureStore.load`` again in the same process (the file is not re-hashed: its path, inode, mtime
  and size are unchanged);

then the same with ``prh.prepare`` after the load (what ``prh align`` does with every model: clamp at the 0.95
quantile, L2-normalise rows), and the time ``save`` spends hashing. Wall-clock and CPU time (all threads of the process: robust to other
load on a shared machine) are both shown, best of R. Usage: ``python benchmarks/store_load.py [--layers 25 --n 1024 --dim 4096]``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=25)
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--dim", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    from safetensors import safe_open

    import prh.features.store as store_module
    from prh._prepare import prepare
    from prh.data.base import PairedDataset
    from prh.features.store import FeatureStore, tensor_digests

    class Items(PairedDataset):
        def __init__(self, n: int) -> None:
            super().__init__("bench", [str(i) for i in range(n)], [[f"item {i}"] for i in range(n)])

        def _image_bytes(self, i: int) -> bytes:
            return str(i).encode()

        def _load_image(self, i: int):  # pragma: no cover
            raise NotImplementedError

    g = torch.Generator().manual_seed(0)
    layers = [torch.randn(args.n, args.dim, generator=g) for _ in range(args.layers)]
    names = [f"layer{i}" for i in range(args.layers)]
    ds = Items(args.n)
    with tempfile.TemporaryDirectory() as root:
        store = FeatureStore(root)
        t0 = time.perf_counter()
        path = store.save(ds, "bench-model", "mean", layers, names, None, {})
        save_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        tensor_digests({f"layer.{i:03d}": t for i, t in enumerate(layers)})
        hash_s = time.perf_counter() - t0
        size_mb = Path(path).stat().st_size / 1e6
        del layers

        def raw() -> None:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                for key in fh.keys():
                    fh.get_tensor(key)

        def touched() -> None:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                for key in fh.keys():
                    fh.get_tensor(key).sum()

        def raw_prepare() -> None:
            with safe_open(str(path), framework="pt", device="cpu") as fh:
                prepare([fh.get_tensor(key) for key in sorted(fh.keys())])

        def verified_prepare() -> None:
            store_module._VERIFIED.clear()
            prepare(store.load(ds, "bench-model", "mean").layers)

        def verified() -> None:
            store_module._VERIFIED.clear()
            store.load(ds, "bench-model", "mean")

        def cached() -> None:
            store.load(ds, "bench-model", "mean")

        raw()  # page cache warm
        times, cpu = {}, {}
        cases = {"raw": raw, "touch": touched, "verified": verified, "cached": cached}
        cases.update({"raw+prepare": raw_prepare, "verified+prepare": verified_prepare})
        for label, fn in cases.items():
            best = best_cpu = float("inf")
            for _ in range(args.repeats):
                t0, c0 = time.perf_counter(), time.process_time()
                fn()
                best = min(best, time.perf_counter() - t0)
                best_cpu = min(best_cpu, time.process_time() - c0)
            times[label], cpu[label] = best, best_cpu
    print(
        f"store entry: {args.layers} layers x N={args.n} x D={args.dim} float32 = {size_mb:.0f} MB; "
        f"{os.cpu_count()} CPU(s), {store_module.HASH_THREADS} hash thread(s), torch {torch.__version__}"
    )
    rows = [
        ("raw safetensors open (lazy, no checks)", "raw", "touch"),
        ("raw open + one pass over the data", "touch", "touch"),
        ("first load (header, sha256, finite)", "verified", "touch"),
        ("later loads (cached verification)", "cached", "touch"),
        ("raw open + prepare", "raw+prepare", "raw+prepare"),
        ("first load + prepare", "verified+prepare", "raw+prepare"),
    ]
    print(f"{'case':<42}{'wall s':>8}{'ratio':>7}{'CPU s':>8}{'ratio':>7}  (ratio to)")
    for text, label, ref in rows:
        print(
            f"{text:<42}{times[label]:>8.3f}{times[label] / times[ref]:>7.2f}"
            f"{cpu[label]:>8.3f}{cpu[label] / cpu[ref]:>7.2f}  ({ref})"
        )
    print(f"save: {save_s:.3f} s in all, of which hashing {hash_s:.3f} s ({100 * hash_s / save_s:.0f}%)")


if __name__ == "__main__":
    main()
