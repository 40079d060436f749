"""Sharded, resumable extraction (prh.features.shards through extract_and_save / extract): a run that dies mid-way
(an exception, or a process killed with no clean-up at all) leaves its complete shards; the next run computes only
the missing ones and stores features bit-identical to an uninterrupted run; the store entry is the usual one file
+ sidecar and the shards are removed; shards of other settings or with damaged bytes are recomputed."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from prh.errors import ExtractionError
from prh.features import ExtractConfig, extract
from prh.features._extract import extract_and_save
from prh.features.shards import RowRange, shard_folder, shard_ranges
from prh.features.store import FeatureStore
from prh.models import ModelSpec
from prh.models.preprocess import ImageTransform
from prh.models.tiny import tiny_cnn
from prh.models.torch_module import TorchModuleAdapter

#: the module (``prh.features.extract`` as an attribute is the function of the same name)
extract_mod = importlib.import_module("prh.features._extract")
N = 23
SHARD = 5  # 5 shards: 4 of 5 rows and one of 3
SPEC = ModelSpec(name="tiny-cnn", source="tiny", adapter="torch-module", modality="vision")


class Pairs:
    """A paired dataset in memory: N random images of varied sizes, one caption each."""

    def __init__(self, n=N, seed=0):
        self.name = "pairs"
        rng = np.random.default_rng(seed)
        sizes = [(40, 30), (30, 50), (64, 64), (33, 47), (50, 40)]
        self._images = [
            Image.fromarray(rng.integers(0, 255, (*sizes[i % 5][::-1], 3), dtype=np.uint8)) for i in range(n)
        ]
        self._texts = [f"caption number {i} " + "word " * (i % 7) for i in range(n)]

    def __len__(self):
        return len(self._images)

    def image(self, i):
        return self._images[i]

    def text(self, i, caption_index=0):
        return self._texts[i]

    def texts(self, caption_index=0):
        return list(self._texts)

    def fingerprint(self):
        return f"pairs-{len(self)}"


class Adapter(TorchModuleAdapter):
    """A tiny CNN through the real torch-module adapter, counting its extract calls and dying (raising) on the
    ``die_at``-th one after its first batch."""

    def __init__(self, die_at=None):
        super().__init__(
            SPEC,
            device="cpu",
            module=tiny_cnn(seed=3),
            layers=["stem", "blocks.0", "blocks.1", "head:input"],
            transform=ImageTransform(size=(20, 20), crop=(16, 16)),
        )
        self.calls, self.die_at, self.batches = [], die_at, 0

    def extract(self, dataset, *args, **kwargs):
        self.calls.append(dataset.start if isinstance(dataset, RowRange) else 0)
        self.batches = 0  # batches of this call
        return super().extract(dataset, *args, **kwargs)

    def forward_pixels(self, pixels):
        if self.die_at is not None and len(self.calls) == self.die_at and self.batches:
            raise KeyboardInterrupt("killed mid-shard")
        self.batches += 1
        return super().forward_pixels(pixels)


def _use(monkeypatch, adapter):
    monkeypatch.setattr(extract_mod, "build_adapter", lambda spec, **kw: adapter)
    return adapter


def _config(**kw):
    return ExtractConfig(device="cpu", batch_size=2, shard_size=SHARD, workers=0, **kw)


def _stored(store, ds):
    return store.load(ds, SPEC.name, "mean")


def _same(a, b):
    return a.layer_names == b.layer_names and all(torch.equal(x, y) for x, y in zip(a.layers, b.layers))


def test_shard_ranges_and_row_view():
    assert shard_ranges(23, 5) == [(0, 5), (5, 10), (10, 15), (15, 20), (20, 23)]
    assert shard_ranges(4, 5) == [(0, 4)]
    ds = Pairs()
    view = RowRange(ds, 5, 10)
    assert len(view) == 5 and view.texts() == ds.texts()[5:10] and view.image(0) is ds.image(5)


def test_killed_run_resumes_bit_identical(tmp_path, monkeypatch):
    ds = Pairs()
    reference = FeatureStore(tmp_path / "reference")
    whole = _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, reference, _config())
    assert whole.calls == [0, 5, 10, 15, 20]
    assert not shard_folder(reference.path(ds, SPEC.name, "mean")).exists()  # removed after the write
    assert sorted(p.name for p in reference.path(ds, SPEC.name, "mean").parent.iterdir()) == [
        "tiny-cnn__mean.json",
        "tiny-cnn__mean.safetensors",
    ]

    store = FeatureStore(tmp_path / "store")
    _use(monkeypatch, Adapter(die_at=3))
    with pytest.raises(KeyboardInterrupt):
        extract_and_save(SPEC, ds, store, _config())
    folder = shard_folder(store.path(ds, SPEC.name, "mean"))
    assert not store.path(ds, SPEC.name, "mean").exists()
    assert sorted(p.name for p in folder.iterdir()) == [
        "rows-0000000000-0000000005.safetensors",
        "rows-0000000005-0000000010.safetensors",
    ]

    resumed = _use(monkeypatch, Adapter())
    rows = extract([SPEC], ds, store, _config(), progress=False, log=(logged := []).append)
    assert rows[0]["status"] == "extracted" and rows[0]["resumed_rows"] == 10
    assert any("resumed: 10 of 23 rows" in line for line in logged)
    assert resumed.calls == [10, 15, 20]  # only the missing shards
    got, want = _stored(store, ds), _stored(reference, ds)
    assert _same(got, want)
    assert got.meta["shards"] == {"count": 5, "rows": SHARD, "reused_rows": 10}
    assert got.meta["n_layers"] == 4 and got.meta["samples_per_s"] > 0
    assert not folder.exists()


def test_sharded_equals_one_pass_and_small_n_writes_no_shard(tmp_path, monkeypatch):
    ds = Pairs()
    one_pass = FeatureStore(tmp_path / "one")
    ad = _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, one_pass, _config().replace(shard_size=0))
    assert ad.calls == [0] and "shards" not in _stored(one_pass, ds).meta
    sharded = FeatureStore(tmp_path / "sharded")
    extract_and_save(SPEC, ds, sharded, _config())
    for a, b in zip(_stored(one_pass, ds).layers, _stored(sharded, ds).layers, strict=True):
        assert torch.allclose(a, b, atol=1e-6)  # other batches (cut at shard ends): float rounding at most
    small = Pairs(SHARD)
    ad = _use(monkeypatch, Adapter())
    extract_and_save(SPEC, small, FeatureStore(tmp_path / "small"), _config())
    assert ad.calls == [0]  # N <= shard_size: one pass, exactly as without shards


def test_other_settings_and_damaged_shards_are_recomputed(tmp_path, monkeypatch):
    ds = Pairs()
    store = FeatureStore(tmp_path / "store")
    _use(monkeypatch, Adapter(die_at=4))
    with pytest.raises(KeyboardInterrupt):
        extract_and_save(SPEC, ds, store, _config())
    folder = shard_folder(store.path(ds, SPEC.name, "mean"))
    files = sorted(folder.glob("rows-*.safetensors"))
    assert len(files) == 3
    raw = bytearray(files[1].read_bytes())
    raw[-8:] = b"\xff" * 8  # damaged values: the digest no longer matches
    files[1].write_bytes(bytes(raw))
    (folder / f".{files[2].name}.p999999999-{os.uname().nodename}.{'0' * 32}.tmp").write_bytes(b"half")
    ad = _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, store, _config())
    assert ad.calls == [5, 15, 20]
    reference = FeatureStore(tmp_path / "reference")
    _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, reference, _config())
    assert _same(_stored(store, ds), _stored(reference, ds))

    # a different batch size may change the floats: the earlier run's shards are not mixed in
    _use(monkeypatch, Adapter(die_at=2))
    with pytest.raises(KeyboardInterrupt):
        extract_and_save(SPEC, ds, store, _config(force=True))
    ad = _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, store, _config(force=True).replace(batch_size=3))
    assert ad.calls == [0, 5, 10, 15, 20]


def test_a_failing_shard_keeps_the_stored_entry_and_the_done_shards(tmp_path, monkeypatch):
    ds = Pairs()
    store = FeatureStore(tmp_path / "store")
    _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, store, _config())
    before = store.path(ds, SPEC.name, "mean").read_bytes()

    class Failing(Adapter):
        def forward_pixels(self, pixels):
            if len(self.calls) == 2:
                raise ExtractionError("out of memory")
            return super().forward_pixels(pixels)

    _use(monkeypatch, Failing())
    rows = extract([SPEC], ds, store, _config(force=True), progress=False)
    assert rows[0]["status"] == "failed" and "out of memory" in rows[0]["error"]
    assert store.path(ds, SPEC.name, "mean").read_bytes() == before
    assert len(list(shard_folder(store.path(ds, SPEC.name, "mean")).glob("rows-*"))) == 1


CHILD = textwrap.dedent(
    """
    import os, sys
    import torch
    sys.path.insert(0, {tests!r})
    torch.set_num_threads({threads})
    import importlib
    extract_mod = importlib.import_module("prh.features._extract")
    from prh.features._extract import extract_and_save
    from prh.features.store import FeatureStore
    from test_extract_shards import SPEC, Adapter, Pairs, _config

    class Killed(Adapter):
        def forward_pixels(self, pixels):
            if len(self.calls) == 3 and self.batches:
                os._exit(9)  # like kill -9 in the middle of the third shard: no exception, no clean-up
            return super().forward_pixels(pixels)

    extract_mod.build_adapter = lambda spec, **kw: Killed()
    extract_and_save(SPEC, Pairs(), FeatureStore({root!r}), _config())
    """
)


def test_process_killed_without_cleanup_resumes_bit_identical(tmp_path, monkeypatch):
    """A real kill: the child process exits on the spot in the middle of its third shard."""
    root = tmp_path / "store"
    script = CHILD.format(tests=str(Path(__file__).parent), threads=torch.get_num_threads(), root=str(root))
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=False
    )
    assert proc.returncode == 9, proc.stderr
    ds, store = Pairs(), FeatureStore(root)
    assert len(list(shard_folder(store.path(ds, SPEC.name, "mean")).glob("rows-*"))) == 2
    ad = _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, store, _config())
    assert ad.calls == [10, 15, 20]
    reference = FeatureStore(tmp_path / "reference")
    _use(monkeypatch, Adapter())
    extract_and_save(SPEC, ds, reference, _config())
    assert _same(_stored(store, ds), _stored(reference, ds))


def test_language_shards_merge_bpb_and_token_counts(tmp_path):
    from prh.models.hf_causal_lm import HFCausalLMAdapter
    from prh.models.tiny import tiny_causal_lm, tiny_tokenizer

    spec = ModelSpec(name="tiny-lm", source="tiny", adapter="hf-causal-lm", modality="language")
    ad = HFCausalLMAdapter(spec, device="cpu", model=tiny_causal_lm("llama"), tokenizer=tiny_tokenizer())
    ds = Pairs(11)
    config = ExtractConfig(device="cpu", batch_size=3, shard_size=4)
    whole = ad.extract(ds, batch_size=3)
    folder = extract_mod.ShardFolder(tmp_path / "shards", {"k": 1})
    merged, reused = extract_mod.extract_sharded(ad, ds, "mean", config, folder)
    assert reused == 0 and len(list(folder.folder.glob("rows-*"))) == 3
    for a, b in zip(whole.layers, merged.layers, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert torch.allclose(whole.per_sample["bpb"], merged.per_sample["bpb"], atol=1e-5)
    assert merged.meta["n_tokens"] == whole.meta["n_tokens"]
    assert merged.meta["bits_per_byte"] == pytest.approx(whole.meta["bits_per_byte"], abs=1e-5)
    again, reused = extract_mod.extract_sharded(ad, ds, "mean", config, folder)
    assert reused == 11 and all(torch.equal(a, b) for a, b in zip(merged.layers, again.layers))
