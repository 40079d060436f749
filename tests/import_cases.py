"""The three files docs/import.md walks through, generated for any dataset's item ids (the tests use them too).

1. ``api_embeddings.csv`` -- "API-style sentence embeddings": one row per item, an ``id`` column and 384 feature
   columns, rows in a shuffled order (matched back to the items by id);
2. ``recording.npy`` -- "a brain recording": (R=4, N, 100) responses = a planted shared structure (the items'
   latent code through a random linear map) + independent noise per repeat; plus ``replication.npy``, an independent
   second recording of the same structure;
3. ``other_framework.npz`` -- "a multi-layer model from another framework": three blocks of growing width whose
   alignment with the latent code grows with depth, with an ``ids`` array.

Every model sees the same latent code z (N x 8), so they are aligned with each other; :func:`simulated_ceiling`
gives the score two independent recordings of R repeats have, by simulation (the number the noise ceiling
estimates). Run ``python tests/import_cases.py OUT --dataset openmoji --n 256`` to write the files.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

LATENT = 8
REPEATS = 4
VOXELS = 100
NOISE = 2.5


def latent(n: int, seed: int = 0) -> np.ndarray:
    """The items' shared latent code, (n, LATENT)."""
    return np.random.default_rng(seed).standard_normal((n, LATENT))


def recording_signal(z: np.ndarray, seed: int = 7) -> np.ndarray:
    """The planted structure of the recording: z through a fixed random linear map, (n, VOXELS)."""
    return z @ np.random.default_rng(seed).standard_normal((LATENT, VOXELS))


def record(
    signal: np.ndarray, rng: np.random.Generator, repeats: int = REPEATS, noise: float = NOISE
) -> np.ndarray:
    """One recording: (repeats, n, VOXELS) = signal + independent Gaussian noise of sd ``noise`` per repeat."""
    return (signal[None] + noise * rng.standard_normal((repeats, *signal.shape))).astype(np.float32)


def simulated_ceiling(
    signal: np.ndarray, metric: str, draws: int = 20, seed: int = 99, **kw
) -> tuple[float, float]:
    """Mean and sd, over ``draws`` pairs of fresh independent recordings, of ``metric`` between their repeat-means
    (prepared like stored features): what the noise ceiling of one recording estimates."""
    from prh import prepare
    from prh.metrics import get

    rng = np.random.default_rng(seed)
    fn = get(metric)
    values = []
    for _ in range(draws):
        a, b = record(signal, rng).mean(0), record(signal, rng).mean(0)
        values.append(fn(prepare(torch.from_numpy(a)), prepare(torch.from_numpy(b)), **kw))
    return float(np.mean(values)), float(np.std(values))


def write_cases(out: Path, ids: list[str], seed: int = 0) -> dict[str, Path]:
    """Write the three cases' files for items ``ids`` into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    n = len(ids)
    z = latent(n, seed)
    rng = np.random.default_rng(seed + 1)
    # 1. API embeddings: 384-d, shuffled rows, an id column
    text = z @ rng.standard_normal((LATENT, 384)) + 0.8 * rng.standard_normal((n, 384))
    perm = rng.permutation(n)
    frame = pd.DataFrame(text[perm].astype(np.float32), columns=[f"e{j}" for j in range(384)])
    frame.insert(0, "id", np.asarray(ids)[perm])
    frame.to_csv(out / "api_embeddings.csv", index=False, float_format="%.9g")
    # 2. the recording and an independent replication
    signal = recording_signal(z)
    np.save(out / "recording.npy", record(signal, np.random.default_rng(seed + 2)))
    np.save(out / "replication.npy", record(signal, np.random.default_rng(seed + 3)))
    # 3. three blocks, alignment with z growing with depth
    blocks = {}
    for i, (width, noise) in enumerate([(32, 4.0), (64, 1.5), (128, 0.5)]):
        blocks[f"block{i + 1}"] = (
            np.tanh(z @ rng.standard_normal((LATENT, width)) / 2)
            + noise * 0.3 * rng.standard_normal((n, width))
        ).astype(np.float32)
    np.savez(out / "other_framework.npz", ids=np.asarray(ids, dtype=str), **blocks)
    return {
        "api": out / "api_embeddings.csv",
        "recording": out / "recording.npy",
        "replication": out / "replication.npy",
        "framework": out / "other_framework.npz",
    }


def main(argv: list[str]) -> None:
    """``python tests/import_cases.py OUT [--dataset NAME] [--n N]``: write the files and print the simulated
    ceilings."""
    import argparse

    from prh.data import load_dataset

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--dataset", default="openmoji")
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args(argv)
    ds = load_dataset(args.dataset, n=args.n)
    for name, path in write_cases(args.out, list(ds.ids)).items():
        print(f"{name}: {path}")
    signal = recording_signal(latent(len(ds)))
    for metric, kw in (("mutual_knn", {"k": 10}), ("cknna", {"k": 10}), ("unbiased_cka", {})):
        mean, sd = simulated_ceiling(signal, metric, **kw)
        print(f"simulated ceiling ({metric}): {mean:.4f} (sd {sd:.4f} over 20 pairs of fresh recordings)")


if __name__ == "__main__":
    main(sys.argv[1:])
