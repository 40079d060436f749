"""Fig. 3's grid at the published shapes, end to end: synthetic files -> 127.0.0.1 -> `prh fetch-reference` ->
`prh align --models published-language --models-y published-vision`, against the reference's per-pair loop.

It writes one synthetic file per entry of the built-in catalogue's ``published`` set (the 12 language models'
``_pool-avg`` files and the 17 ViTs' ``_pool-none`` files) with the exact published shapes and dtypes (e.g.
LLaMA-65B (1024, 81, 8192) float16: every hidden state, embeddings included; ViTs (1024, blocks, width) float32) —
checked against the catalogue's file sizes — with planted shared structure (a latent of the items seen by every
model, more strongly by larger models and by middle layers, so that the scores are not at chance and rise with
size), serves them from the scratch folder on 127.0.0.1, fetches them through the real `prh fetch-reference` path
(download, sha256 check, torch.load(weights_only=True), conversion into the store) and runs `prh align` on the
12 x 17 grid, each run in a child process so that its wall time, CPU time and peak resident memory are its own.

The reference's per-pair loop (``measure_alignment.compute_score``: for each layer pair, normalise both layers and
compute mutual kNN from scratch, with a full argsort per neighbour list) is re-implemented literally below and timed
on a sample of layer pairs of at least three model pairs of different sizes; its cost per layer pair is fitted as
c0 + c1 (D_x + D_y) and extrapolated to every layer pair of the 204 model pairs.

Usage (the full size needs about 6 GB of scratch for the files plus 6 GB for the store; both are removed at the end
unless --keep)::

    python benchmarks/paper_grid.py /scratch/prh-paper                # the published shapes
    python benchmarks/paper_grid.py /tmp/pg --scale 0.05 --n 256      # a quick run: widths x 0.05, 256 items
    python benchmarks/paper_grid.py /tmp/pg --with-cka --calibrate 1000
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]

#: (blocks / hidden states L, width D, parameters) of the models behind the published files (model configs;
#: hidden states include the embeddings, so L = layers + 1 for the language models)
SHAPES = {
    "bloom_560m": (25, 1024, 559_214_592),
    "bloom_1b1": (25, 1536, 1_065_314_304),
    "bloom_1b7": (25, 2048, 1_722_408_960),
    "bloom_3b": (31, 2560, 3_002_557_440),
    "bloom_7b1": (31, 4096, 7_069_016_064),
    "openllama_3b": (27, 3200, 3_426_473_600),
    "openllama_7b": (33, 4096, 6_738_415_616),
    "openllama_13b": (41, 5120, 13_015_864_320),
    "llama_7b": (33, 4096, 6_738_415_616),
    "llama_13b": (41, 5120, 13_015_864_320),
    "llama_30b": (61, 6656, 32_528_943_616),
    "llama_65b": (81, 8192, 65_285_660_672),
    "i21k_t_pool-none": (12, 192, 5_717_416),
    "i21k_s_pool-none": (12, 384, 22_050_664),
    "i21k_b_pool-none": (12, 768, 86_567_656),
    "i21k_l_pool-none": (24, 1024, 304_326_632),
    "dinov2_s_pool-none": (12, 384, 22_056_576),
    "dinov2_m_pool-none": (12, 768, 86_580_480),
    "dinov2_l_pool-none": (24, 1024, 304_368_640),
    "dinov2_g_pool-none": (40, 1536, 1_136_480_768),
    "clip_b_pool-none": (12, 768, 86_192_640),
    "clip_l_pool-none": (24, 1024, 303_966_208),
    "clip_h_pool-none": (32, 1280, 632_076_800),
    "clip_i21k_ft_b_pool-none": (12, 768, 86_192_640),
    "clip_i21k_ft_l_pool-none": (24, 1024, 303_966_208),
    "clip_i21k_ft_h_pool-none": (32, 1280, 632_076_800),
    "mae_b_pool-none": (12, 768, 85_798_656),
    "mae_l_pool-none": (24, 1024, 303_301_632),
    "mae_h_pool-none": (32, 1280, 630_764_800),
}
#: synthetic bits-per-byte of the language models (lower for larger models; NOT the published values)
BPB = {
    "bloom_560m": 1.10,
    "bloom_1b1": 1.04,
    "bloom_1b7": 1.00,
    "bloom_3b": 0.96,
    "bloom_7b1": 0.91,
    "openllama_3b": 0.88,
    "openllama_7b": 0.84,
    "openllama_13b": 0.81,
    "llama_7b": 0.83,
    "llama_13b": 0.80,
    "llama_30b": 0.76,
    "llama_65b": 0.74,
}
RANK = 32  # dimension of the planted latent
MASK_TOKENS = 256  # width of the language files' attention mask (about what the published files hold)


# ------------------------------------------------------------------------------------------------ the files
def catalogue_entries() -> list:
    os.environ.pop("PRH_REFERENCE_CATALOGUE", None)
    from prh.features.reference import load_catalogue

    cat = load_catalogue()
    return [cat.features[name] for name in cat.published]


def check_shapes(entries) -> None:
    """The shapes give the catalogue's file sizes (to 1%: the rest is the mask, numbers and pickle framing)."""
    for e in entries:
        layers, width, _ = SHAPES[e.name]
        itemsize = 2 if e.modality == "language" else 4
        payload = 1024 * layers * width * itemsize
        if not payload <= e.size <= payload * 1.01 + 3 * 1024 * MASK_TOKENS * 8:
            raise SystemExit(
                f"{e.name}: shape {(1024, layers, width)} does not give its published size {e.size}"
            )


def make_file(path: Path, entry, n: int, scale: float, seed: int) -> int:
    """One synthetic file of the reference's format; returns its size."""
    layers, width, params = SHAPES[entry.name]
    width = max(8, round(width * scale))
    g = torch.Generator().manual_seed(seed)
    latent = torch.randn(n, RANK, generator=torch.Generator().manual_seed(12345))
    strength = 0.4 + 0.25 * np.log10(params / 5e6) / np.log10(65e9 / 5e6) * 2  # larger models see more of it
    dtype = torch.float16 if entry.modality == "language" else torch.float32
    feats = torch.empty(n, layers, width, dtype=dtype)
    for i in range(layers):
        depth = i / max(1, layers - 1)
        weight = strength * float(np.exp(-((depth - 0.65) ** 2) / 0.08))  # middle-to-late layers align best
        mix = torch.randn(RANK, width, generator=g) / RANK**0.5
        feats[:, i] = (weight * (latent @ mix) + torch.randn(n, width, generator=g)).to(dtype)
    obj: dict = {"feats": feats, "num_params": params}
    if entry.modality == "language":
        obj["bpb"] = torch.tensor(BPB[entry.name])
        obj["loss"] = torch.tensor(BPB[entry.name] * 2.3)
        obj["mask"] = torch.ones(n, MASK_TOKENS, dtype=torch.int64)
    torch.save(obj, path)
    return path.stat().st_size


def write_catalogue(path: Path, entries, files: Path, n: int) -> None:
    lines = ['base_url = "http://127.0.0.1/"', 'published = "verified"', "[dataset]"]
    lines += ['repo = "minhuh/prh"', 'revision = "wit_1024"', f"n = {n}", 'fingerprint = ""']
    for e in entries:
        digest = hashlib.sha256()
        with (files / e.file).open("rb") as fh:
            for block in iter(lambda fh=fh: fh.read(1 << 24), b""):
                digest.update(block)
        lines += ["[[feature]]", f'name = "{e.name}"', f'file = "{e.file}"', f'model = "{e.model}"']
        lines += [
            f'modality = "{e.modality}"',
            f'family = "{e.family}"',
            f'pool = "{e.pool}"',
            "listed = true",
        ]
        size = (files / e.file).stat().st_size
        lines += [f"size = {size}", f'sha256 = "{digest.hexdigest()}"', "verified = true"]
    path.write_text("\n".join(lines) + "\n")


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args):  # noqa: D102 - no request log
        pass


def serve(folder: Path) -> tuple[ThreadingHTTPServer, str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(folder)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}/"


# ------------------------------------------------------------------------------------------------ child runs
def run_prh(args: list[str], env: dict, label: str) -> dict:
    """``prh ARGS`` in a child process; its own wall and CPU seconds and peak RSS."""
    code = (
        "import json,resource,sys,time\n"
        "from prh.cli import main\n"
        f"sys.argv = ['prh'] + {args!r}\n"
        "t = time.perf_counter()\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "u = resource.getrusage(resource.RUSAGE_SELF)\n"
        "print('@@' + json.dumps({'wall_s': time.perf_counter() - t, 'cpu_s': u.ru_utime + u.ru_stime, "
        "'peak_rss_gib': u.ru_maxrss / 2**20}))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{label} failed:\n{done.stderr[-3000:]}")
    line = [x for x in done.stdout.splitlines() if x.startswith("@@")][-1]
    out = json.loads(line[2:])
    print(
        f"{label}: wall {out['wall_s']:.1f} s, CPU {out['cpu_s']:.1f} s, peak RSS {out['peak_rss_gib']:.2f} GiB"
    )
    return out


def stages(out_dir: Path) -> dict:
    prov = json.loads((out_dir / "provenance.json").read_text())
    for stage, t in prov.get("stages", {}).items():
        if t["wall_s"]:
            print(f"    {stage:<12} wall {t['wall_s']:8.1f} s   CPU {t['cpu_s']:8.1f} s")
    mem = prov.get("memory", {})
    if mem:
        print(
            f"    memory estimate {mem['estimate_bytes'] / 2**30:.2f} GiB; peak RSS {mem['peak_rss_bytes'] / 2**30:.2f} GiB"
        )
    return prov.get("stages", {})


# ------------------------------------------------------------------------------------------------ the reference loop
def reference_knn(x: torch.Tensor, k: int) -> torch.Tensor:
    """The reference's neighbour lists: Gram matrix, diagonal -1e8, full argsort, first k."""
    return (x @ x.T).fill_diagonal_(-1e8).argsort(dim=1, descending=True)[:, :k]


def reference_mutual_knn(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    n = a.shape[0]
    rows = torch.arange(n)[:, None]
    mask_a, mask_b = torch.zeros(n, n), torch.zeros(n, n)
    mask_a[rows, reference_knn(a, k)] = 1.0
    mask_b[rows, reference_knn(b, k)] = 1.0
    return float(((mask_a * mask_b).sum(dim=1) / k).mean())


def time_reference(
    store_root: Path, pairs: list[tuple[str, str]], n: int, per_pair: int, seed: int
) -> list[dict]:
    """Time the reference's per-layer-pair step (normalise both layers, mutual kNN from scratch) on ``per_pair``
    random layer pairs of each model pair; the clamp is done once per model beforehand (not timed)."""
    from prh.align._loading import prepared_layers
    from prh.features.store import FeatureStore

    store = FeatureStore(store_root)
    rng = np.random.default_rng(seed)
    out = []
    for lm, vm in pairs:
        feats = {}
        for name in (lm, vm):
            entry = f"published/{name}"
            pool = "avg" if name in BPB else "none"
            stored = store.load(None, entry, pool, dataset_name="minhuh/prh@wit_1024", n=n, dtype=None)
            layers = stored.layers
            picked = set(rng.choice(len(layers), size=min(per_pair, len(layers)), replace=False).tolist())
            kept = {}
            for i, layer in enumerate(
                prepared_layers(layers, 0.95, "model")
            ):  # clamped (normalised again below)
                if i in picked:
                    kept[i] = layer
            feats[name] = kept
        times = []
        for i, j in zip(sorted(feats[lm]), sorted(feats[vm])):
            t = time.perf_counter()
            x = F.normalize(feats[lm][i], p=2, dim=-1)
            y = F.normalize(feats[vm][j], p=2, dim=-1)
            reference_mutual_knn(x, y, 10)
            times.append(time.perf_counter() - t)
        dx, dy = next(iter(feats[lm].values())).shape[1], next(iter(feats[vm].values())).shape[1]
        out.append(
            {"pair": f"{lm} x {vm}", "dx": dx, "dy": dy, "seconds_per_layer_pair": float(np.median(times))}
        )
        print(
            f"  reference loop, {lm} x {vm} (D {dx} + {dy}): {out[-1]['seconds_per_layer_pair']:.3f} s per layer pair"
        )
    return out


def extrapolate(samples: list[dict], entries, scale: float) -> float:
    """Seconds of the reference loop over every layer pair of the language x vision grid, from a least-squares fit
    of its per-layer-pair time c0 + c1 (D_x + D_y) to the samples."""
    a = np.array([[1.0, s["dx"] + s["dy"]] for s in samples])
    c = np.linalg.lstsq(a, np.array([s["seconds_per_layer_pair"] for s in samples]), rcond=None)[0]
    total = 0.0
    lms = [e for e in entries if e.modality == "language"]
    vms = [e for e in entries if e.modality == "vision"]
    for lm in lms:
        lx, dx, _ = SHAPES[lm.name]
        for vm in vms:
            ly, dy, _ = SHAPES[vm.name]
            total += lx * ly * max(c[0] + c[1] * (max(8, round(dx * scale)) + max(8, round(dy * scale))), 0.0)
    return total


# ------------------------------------------------------------------------------------------------ main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "scratch", type=Path, help="scratch folder (created; removed afterwards unless --keep)"
    )
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiply every width D by this (quick runs)"
    )
    parser.add_argument("--n", type=int, default=1024, help="items (1024 as published)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder (files, store, results)")
    parser.add_argument(
        "--with-cka", action="store_true", help="also time the grid with cknna and unbiased_cka"
    )
    parser.add_argument(
        "--calibrate", type=int, default=0, help="also time K-permutation calibration (mutual kNN)"
    )
    parser.add_argument(
        "--reference-layer-pairs", type=int, default=4, help="layer pairs timed per model pair"
    )
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT / "src"))
    entries = catalogue_entries()
    check_shapes(entries)
    scratch = args.scratch
    files, store = scratch / "files", scratch / "store"
    files.mkdir(parents=True, exist_ok=True)
    report: dict = {"scale": args.scale, "n": args.n, "cores": os.cpu_count(), "load": os.getloadavg()}
    print(
        f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; scale {args.scale}, N={args.n}"
    )
    try:
        t = time.perf_counter()
        total = sum(make_file(files / e.file, e, args.n, args.scale, i) for i, e in enumerate(entries))
        report["write_s"] = time.perf_counter() - t
        print(f"wrote {len(entries)} files, {total / 2**30:.2f} GiB, in {report['write_s']:.1f} s")
        catalogue = scratch / "catalogue.toml"
        write_catalogue(catalogue, entries, files, args.n)
        httpd, url = serve(files)
        env = {**os.environ, "PRH_REFERENCE_CATALOGUE": str(catalogue), "PYTHONPATH": str(ROOT / "src")}
        try:
            report["fetch"] = run_prh(
                ["fetch-reference", "all", "--store", str(store), "--base-url", url, "--quiet"],
                env,
                "fetch-reference (download, sha256, torch.load weights_only, convert)",
            )
        finally:
            httpd.shutdown()
            httpd.server_close()
        if not args.keep:
            shutil.rmtree(files)
        grid = [
            "align",
            "--models",
            "published-language",
            "--models-y",
            "published-vision",
            "--store",
            str(store),
        ]
        runs = {"mutual_knn": ["--metric", "mutual_knn"]}
        if args.with_cka:
            runs["cknna"] = ["--metric", "cknna"]
            runs["unbiased_cka"] = ["--metric", "unbiased_cka"]
        if args.calibrate:
            runs[f"mutual_knn K={args.calibrate}"] = [
                "--metric",
                "mutual_knn",
                "--calibrate",
                str(args.calibrate),
            ]
        report["runs"] = {}
        for label, extra in runs.items():
            out = scratch / ("out-" + label.replace(" ", "").replace("=", ""))
            measured = run_prh(
                grid + extra + ["--out", str(out), "--no-report"], env, f"prh align 12 x 17, {label}"
            )
            measured["stages"] = stages(out)
            report["runs"][label] = measured
        by_size = sorted(entries, key=lambda e: SHAPES[e.name][0] * SHAPES[e.name][1])
        lms = [e.name for e in by_size if e.modality == "language"]
        vms = [e.name for e in by_size if e.modality == "vision"]
        pairs = [(lms[0], vms[0]), (lms[len(lms) // 2], vms[len(vms) // 2]), (lms[-1], vms[-1])]
        samples = time_reference(store, pairs, args.n, args.reference_layer_pairs, seed=0)
        reference = extrapolate(samples, entries, args.scale)
        ours = report["runs"]["mutual_knn"]["wall_s"]
        report["reference"] = {
            "samples": samples,
            "extrapolated_s": reference,
            "ratio_wall": reference / ours,
        }
        print(
            f"reference loop, all layer pairs of the 12 x 17 grid (extrapolated): {reference:.0f} s = "
            f"{reference / 60:.1f} min; prh align (mutual_knn) {ours:.1f} s: {reference / ours:.0f}x"
        )
        (scratch.parent / f"{scratch.name}-paper_grid.json").write_text(json.dumps(report, indent=2))
        print(f"record: {scratch.parent / f'{scratch.name}-paper_grid.json'}")
    finally:
        if not args.keep and scratch.exists():
            shutil.rmtree(scratch)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(f"this script's own peak RSS (writing files, the reference loop): {peak:.2f} GiB")


if __name__ == "__main__":
    main()
