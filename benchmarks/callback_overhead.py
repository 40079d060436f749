"""Cost of one alignment measurement inside a training loop, against its floor.

One :meth:`prh.integrations.AlignmentMonitor.measure` call (what both trainer callbacks run) extracts the training
model's features on the N reference items and sweeps them against the reference's cached layers. Its floor is one
plain forward pass of the model over the same N items (batched, ``output_hidden_states``, no pooling, no
bookkeeping) plus one layer sweep of the pooled features against the same cached reference layers.

A tiny random causal LM (built from a config, nothing downloaded) is measured against a tiny random ViT reference
whose features are extracted once into a temporary store, on N synthetic image–caption pairs::

    python benchmarks/callback_overhead.py --n 256 --repeats 5

Prints the first call (it also loads the reference and builds its caches), then the median of ``--repeats``
calls beside the floor's median and their ratio, measured in this run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from typer.testing import CliRunner

from prh import prepare
from prh._sweep import cache_layers, sweep_caches
from prh.cli import app
from prh.integrations import AlignmentMonitor
from prh.models import load_user_config
from prh.models.pooling import pool_tokens
from prh.models.tiny import tiny_causal_lm, tiny_tokenizer, tiny_vit


def workspace(root: Path, n: int) -> dict:
    """N random images with three-word captions in a folder dataset, and a tiny ViT reference extracted."""
    tiny_vit(seed=0).save_pretrained(root / "vit")
    data = root / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    words = ["red", "green", "blue", "apple", "dog", "cat", "rocket", "face", "tree", "house", "sun", "moon"]
    with open(data / "metadata.jsonl", "w") as fh:
        for i in range(n):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(data / f"img{i}.png")
            fh.write(
                json.dumps({"file_name": f"img{i}.png", "text": " ".join(rng.choice(words, size=3))}) + "\n"
            )
    models = root / "models.toml"
    models.write_text(
        f'[[model]]\nname = "ref-vit"\nsource = "{root / "vit"}"\nadapter = "hf-vision"\nmodality = "vision"\n'
        'pool = "cls"\n'
    )
    store = root / "store"
    args = ["extract", "--models", "ref-vit", "--dataset", str(data), "--store", str(store), "--models-file"]
    res = CliRunner().invoke(app, [*args, str(models), "--no-progress", "--device", "cpu"])
    if res.exit_code != 0:
        raise SystemExit(res.output)
    load_user_config(models)
    return {"dataset": str(data), "store": str(store)}


def floor(model, tokenizer, texts: list[str], batch_size: int, reference_caches) -> float:
    """Seconds of a plain batched forward over ``texts`` (every hidden state, mean-pooled) plus one sweep."""
    start = time.perf_counter()
    pooled: list[list[torch.Tensor]] = []
    tokenizer.pad_token = tokenizer.eos_token
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], return_tensors="pt", padding=True)
            out = model(**enc, output_hidden_states=True)
            pooled.append([pool_tokens(h, "mean", enc["attention_mask"]) for h in out.hidden_states])
    layers = [torch.cat([b[j] for b in pooled]) for j in range(len(pooled[0]))]
    mine = cache_layers(prepare(layers), "mutual_knn", k=10)
    sweep_caches(mine, reference_caches)
    tokenizer.pad_token = None
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=256, help="reference items")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    with tempfile.TemporaryDirectory() as tmp:
        ws = workspace(Path(tmp), args.n)
        model, tok = tiny_causal_lm("gpt2", layers=4, hidden=64), tiny_tokenizer()
        model.train()
        monitor = AlignmentMonitor(
            {"references": ["ref-vit"], **ws, "metrics": ["mutual_knn"], "batch_size": args.batch_size}
        )
        start = time.perf_counter()
        monitor.measure(model, tok)
        first = time.perf_counter() - start
        texts = monitor.alignment.dataset.texts(0)
        reference = cache_layers(monitor.alignment.references[0].layers, "mutual_knn", k=10)
        calls, floors = [], []
        for _ in range(args.repeats):  # interleaved, so both see the same machine load
            start = time.perf_counter()
            monitor.measure(model, tok)
            calls.append(time.perf_counter() - start)
            floors.append(floor(model, tok, texts, args.batch_size, reference))
    call, low = statistics.median(calls), statistics.median(floors)
    print(f"N={args.n} items, tiny GPT-2 (4 blocks, 64-d), reference: tiny ViT, mutual_knn k=10")
    print(f"first call (loads the reference, builds its caches): {first:.3f} s")
    print(f"measure() median of {args.repeats}: {call:.3f} s   floor (forward + one sweep): {low:.3f} s")
    print(
        f"ratio measure / floor: {call / low:.2f}x   (per-run ratios: {[round(c / f, 2) for c, f in zip(calls, floors)]})"
    )


if __name__ == "__main__":
    main()
