"""The feature store: bit-exact round trips, atomic writes, fingerprint checks, clear errors."""

from __future__ import annotations

import json
import os

import pytest
import torch

from prh.data.base import PairedDataset
from prh.errors import ExtractionError, InputError, MissingFeaturesError
from prh.features.store import FeatureStore, StoredFeatures, slug


class _Toy(PairedDataset):
    def __init__(self, n: int = 6, name: str = "toy", tweak: str = ""):
        self.blobs = [f"img{i}".encode() for i in range(n)]
        super().__init__(name, [f"id{i}" for i in range(n)], [[f"caption {i}{tweak}"] for i in range(n)])

    def _image_bytes(self, i):
        return self.blobs[i]

    def _load_image(self, i):  # pragma: no cover
        raise NotImplementedError


def _features(n: int = 6, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    layers = [torch.randn(n, 4, generator=g), torch.randn(n, 4, generator=g), torch.randn(n, 7, generator=g)]
    # values that expose any lossy conversion: subnormals, huge, negative zero
    layers[0][0, 0] = 1e-40
    layers[0][0, 1] = 3.4e38
    layers[0][0, 2] = -0.0
    return layers, ["embed", "block.0", "head"], {"bpb": torch.rand(n, generator=g, dtype=torch.float64)}


def test_round_trip_bit_exact_with_different_dims(tmp_path):
    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, per_sample = _features()
    meta = {"adapter": "torch-module", "revision": "abc", "competence": {"bpb": 1.25}, "wall_time_s": 0.5}
    path = store.save(ds, "org/model-x", "mean", layers, names, per_sample, meta)
    assert path == tmp_path / "toy-n6" / "org--model-x__mean.safetensors"
    assert path.with_suffix(".json").is_file()
    assert store.has(ds, "org/model-x", "mean")
    got = store.load(ds, "org/model-x", "mean")
    assert isinstance(got, StoredFeatures)
    assert got.layer_names == names
    assert [t.shape for t in got.layers] == [(6, 4), (6, 4), (6, 7)]
    for a, b in zip(got.layers, layers):
        assert a.dtype == torch.float32 and a.device.type == "cpu"
        assert torch.equal(a.view(torch.int32), b.view(torch.int32))  # bit-exact, -0.0 included
    assert (
        torch.equal(got.per_sample["bpb"], per_sample["bpb"]) and got.per_sample["bpb"].dtype == torch.float64
    )
    m = got.meta
    assert m["model"] == "org/model-x" and m["pool"] == "mean" and m["n"] == 6
    assert m["dataset"] == {"name": "toy", "fingerprint": ds.fingerprint(), "n": 6}
    assert m["layer_dims"] == [4, 4, 7] and m["per_sample"] == ["bpb"]
    assert m["adapter"] == "torch-module" and m["competence"] == {"bpb": 1.25} and m["revision"] == "abc"
    assert m["dtype"] == "float32" and "prh_version" in m and "created" in m
    with pytest.raises(InputError, match="different widths"):
        got.stacked()
    # the sidecar is plain JSON (no pickle), readable by anyone
    assert json.loads(path.with_suffix(".json").read_text())["write_id"] == m["write_id"]


def test_stacked_and_views_of_one_tensor(tmp_path):
    store = FeatureStore(tmp_path)
    ds = _Toy(5)
    x = torch.randn(5, 3, 8)
    store.save(ds, "m", "last", [x[:, i] for i in range(3)], ["a", "b", "c"], None, {})
    got = store.load(ds, "m", "last")
    assert torch.equal(got.stacked(), x)
    assert got.per_sample == {}


def test_has_false_after_fingerprint_change_and_load_says_what_to_run(tmp_path):
    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, _ = _features()
    store.save(ds, "minilm-l6", "mean", layers, names, None, {})
    changed = _Toy(tweak="!")  # same name and N, one caption differs -> other fingerprint, same path
    assert store.path(changed, "minilm-l6", "mean") == store.path(ds, "minilm-l6", "mean")
    assert not store.has(changed, "minilm-l6", "mean")
    with pytest.raises(MissingFeaturesError, match="fingerprint") as err:
        store.load(changed, "minilm-l6", "mean")
    assert f"prh extract --models minilm-l6 --dataset toy --n 6 --store {tmp_path}" in str(err.value)
    assert not store.has(ds, "minilm-l6", "cls")
    assert not store.has(_Toy(5), "minilm-l6", "mean")
    with pytest.raises(
        MissingFeaturesError, match=r"prh extract --models other --dataset toy --n 6 --pool cls"
    ):
        store.load(ds, "other", "cls")


def test_load_by_dataset_name(tmp_path):
    store = FeatureStore(tmp_path)
    layers, names, _ = _features()
    store.save(_Toy(), "m", "mean", layers, names, None, {})
    assert store.load(None, "m", "mean", dataset_name="toy").n == 6
    assert store.load(None, "m", "mean", dataset_name="toy-n6").n == 6
    store.save(_Toy(4), "m", "mean", [t[:4] for t in layers], names, None, {})
    with pytest.raises(InputError, match="several sizes"):
        store.load(None, "m", "mean", dataset_name="toy")
    assert store.load(None, "m", "mean", dataset_name="toy", n=4).n == 4
    with pytest.raises(MissingFeaturesError, match="prh extract --models m --dataset nope"):
        store.load(None, "m", "mean", dataset_name="nope")
    assert sorted(e["dataset"]["n"] for e in store.entries()) == [4, 6]


def test_missing_features_message_names_datasets_as_the_cli_takes_them(tmp_path):
    store = FeatureStore(tmp_path)
    with pytest.raises(MissingFeaturesError, match=r"--dataset wit_1024 --n 1024"):  # the paper's set
        store.load(None, "m", "mean", dataset_name="minhuh/prh@wit_1024", n=1024)
    with pytest.raises(MissingFeaturesError, match=r"--dataset /data/pairs --n 3"):  # a folder: its path
        store.load(None, "m", "mean", dataset_name="folder:/data/pairs", n=3)


def test_killed_safetensors_write_leaves_old_files_intact(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path)
    ds = _Toy()
    old_layers, names, _ = _features(seed=1)
    path = store.save(ds, "m", "mean", old_layers, names, None, {"run": "old"})
    before = {p.name: p.read_bytes() for p in path.parent.iterdir()}

    import safetensors.torch

    real_save = safetensors.torch.save_file

    def dying_save(tensors, filename, metadata=None):
        real_save(tensors, filename, metadata=metadata)
        with open(filename, "r+b") as fh:  # simulate a kill half-way: a truncated temp file, then death
            fh.truncate(100)
        raise KeyboardInterrupt("killed")

    monkeypatch.setattr(safetensors.torch, "save_file", dying_save)
    new_layers, _, _ = _features(seed=2)
    with pytest.raises(KeyboardInterrupt):
        store.save(ds, "m", "mean", new_layers, names, None, {"run": "new"})
    after = {p.name: p.read_bytes() for p in path.parent.iterdir()}
    assert after == before  # no temp file left, old files byte-identical
    got = store.load(ds, "m", "mean")
    assert got.meta["run"] == "old" and torch.equal(got.layers[2], old_layers[2])


def test_kill_between_the_two_replaces_is_detected(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, _ = _features(seed=1)
    path = store.save(ds, "m", "mean", layers, names, None, {})
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append(dst)
        if str(dst).endswith(".json"):
            raise OSError("killed before the sidecar was moved into place")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace_then_die)
    with pytest.raises(OSError, match="killed"):
        store.save(ds, "m", "mean", _features(seed=3)[0], names, None, {})
    monkeypatch.setattr(os, "replace", real_replace)
    assert [p.name for p in path.parent.iterdir() if p.name.endswith(".tmp")] == []
    # new tensors with the old sidecar: the write ids differ, so the entry counts as absent, never as stale data
    assert not store.has(ds, "m", "mean")
    assert store.entries() == []
    with pytest.raises(MissingFeaturesError):
        store.load(ds, "m", "mean")


def test_first_write_killed_leaves_nothing(tmp_path, monkeypatch):
    store = FeatureStore(tmp_path)
    ds = _Toy()
    monkeypatch.setattr(os, "replace", lambda *a: (_ for _ in ()).throw(OSError("disk full")))
    with pytest.raises(OSError):
        store.save(ds, "m", "mean", *_features()[:2], None, {})
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []
    assert not store.has(ds, "m", "mean")


def test_save_validates(tmp_path):
    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, _ = _features()
    with pytest.raises(InputError, match=r"shape \(N=6, D\)"):
        store.save(ds, "m", "mean", [torch.zeros(5, 3)], ["a"], None, {})
    with pytest.raises(InputError, match="layer names"):
        store.save(ds, "m", "mean", layers, names[:2], None, {})
    with pytest.raises(InputError, match="bpb"):
        store.save(ds, "m", "mean", layers, names, {"bpb": torch.zeros(3)}, {})
    bad = [t.clone() for t in layers]
    bad[1][2, 3] = float("nan")
    with pytest.raises(ExtractionError, match="'block.0'"):
        store.save(ds, "m", "mean", bad, names, None, {})
    assert not any(tmp_path.rglob("*.safetensors"))


def test_slug_is_safe_and_distinct():
    assert slug("org/model") == "org--model"
    assert slug("minhuh/prh@wit_1024") == "minhuh--prh@wit_1024"
    a, b = slug("folder:/data/x y"), slug("folder:/data/x_y")
    assert a != b and "/" not in a and " " not in a


def test_find_many_by_dataset_and_by_name(tmp_path):
    store = FeatureStore(tmp_path)
    layers, names, _ = _features()
    ds = _Toy()
    store.save(ds, "a", "mean", layers, names, None, {"adapter": "x"})
    store.save(ds, "b", "cls", layers, names, None, {})
    metas = store.find_many(["a", "b"], {"a": "mean", "b": "cls"}, dataset=ds)
    assert sorted(metas) == ["a", "b"]
    assert metas["a"]["adapter"] == "x" and "path" not in metas["a"]
    assert metas["b"]["pool"] == "cls" and metas["b"]["dataset"]["fingerprint"] == ds.fingerprint()
    by_name = store.find_many(["a"], "mean", dataset_name="toy")
    assert by_name["a"]["layer_names"] == names
    assert store.find_many(["a"], "mean", dataset_name="toy-n6", n=6)["a"]["n"] == 6
    with pytest.raises(InputError, match="dataset or a dataset_name"):
        store.find_many(["a"], "mean")


def test_find_many_reports_all_missing_models_at_once(tmp_path):
    store = FeatureStore(tmp_path)
    layers, names, _ = _features()
    ds = _Toy()
    store.save(ds, "a", "mean", layers, names, None, {})
    with pytest.raises(MissingFeaturesError) as err:
        store.find_many(["a", "x", "y"], "mean", dataset=ds)
    text = str(err.value)
    assert "2 model(s) are missing" in text
    assert "prh extract --models x" in text and "prh extract --models y" in text
    # another version of the dataset: the stored features do not count
    with pytest.raises(MissingFeaturesError, match="fingerprint mismatch"):
        store.find_many(["a"], "mean", dataset=_Toy(tweak="!"))


def test_find_many_sizes_and_fingerprints(tmp_path):
    store = FeatureStore(tmp_path)
    layers, names, _ = _features()
    store.save(_Toy(), "a", "mean", layers, names, None, {})
    store.save(_Toy(4), "a", "mean", [t[:4] for t in layers], names, None, {})
    with pytest.raises(InputError, match="several sizes"):
        store.find_many(["a"], "mean", dataset_name="toy")
    assert store.find_many(["a"], "mean", dataset_name="toy", n=4)["a"]["n"] == 4
    store.save(_Toy(tweak="!"), "b", "mean", layers, names, None, {})  # same name and n, other data
    with pytest.raises(InputError, match="different data"):
        store.find_many(["a", "b"], "mean", dataset_name="toy", n=6)


# ------------------------------------------------------------------------------------------ integrity ----------------


def test_sidecar_holds_a_sha256_of_every_tensor(tmp_path):
    import hashlib

    store = FeatureStore(tmp_path)
    layers, names, per_sample = _features()
    path = store.save(_Toy(), "m", "mean", layers, names, per_sample, {})
    digests = json.loads(path.with_suffix(".json").read_text())["sha256"]
    assert sorted(digests) == ["layer.000", "layer.001", "layer.002", "sample.bpb"]
    assert digests["layer.002"] == hashlib.sha256(layers[2].numpy().tobytes()).hexdigest()
    assert digests["sample.bpb"] == hashlib.sha256(per_sample["bpb"].numpy().tobytes()).hexdigest()


def test_verification_runs_once_per_file_per_process(tmp_path, monkeypatch):
    import prh.features.store as store_module

    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, _ = _features()
    path = store.save(ds, "m", "mean", layers, names, None, {})
    calls = []
    real = store_module.tensor_digest
    monkeypatch.setattr(store_module, "tensor_digest", lambda t: calls.append(1) or real(t))
    store.load(ds, "m", "mean")
    assert len(calls) == 3
    store.load(ds, "m", "mean")
    FeatureStore(tmp_path).load(None, "m", "mean", dataset_name="toy")  # another store object, same file
    assert len(calls) == 3
    # rewriting the entry (new inode, mtime) is verified again
    store.save(ds, "m", "mean", layers, names, None, {})
    store.load(ds, "m", "mean")
    assert len(calls) == 9  # 3 hashed by the write, 3 verified by the load
    # an in-place change of the file (mtime moves) is caught on the next load
    data = bytearray(path.read_bytes())
    data[-8:] = bytes(8)
    path.write_bytes(bytes(data))
    with pytest.raises(MissingFeaturesError, match=r"file corrupt .*\['head'\] do not match their sha256"):
        store.load(ds, "m", "mean")


def test_an_old_sidecar_without_checksums_loads_with_one_warning(tmp_path):
    from prh.errors import PrhWarning

    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, _ = _features()
    path = store.save(ds, "m", "mean", layers, names, None, {})
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    del meta["sha256"]
    sidecar.write_text(json.dumps(meta))
    with pytest.warns(PrhWarning, match=r"without checksums.*prh extract --force --models m"):
        got = store.load(ds, "m", "mean")
    assert torch.equal(got.layers[1], layers[1])
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # once per file per process
        store.load(ds, "m", "mean")


def test_a_killed_writer_leaves_a_temporary_that_the_next_write_removes(tmp_path):
    """A real kill -9 inside the write; the next save of the same target removes the stale temporary (and leaves
    the temporaries of a live writer and of another target alone)."""
    import signal
    import subprocess
    import sys

    from prh.atomic import temporary_path

    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, _ = _features()
    path = store.save(ds, "m", "mean", layers, names, None, {})
    code = (
        "import os, signal, sys\n"
        "from prh.atomic import atomic_write\n"
        "def write(tmp):\n"
        "    with open(tmp, 'wb') as fh:\n"
        "        fh.write(b'half a safetensors file')\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_write(sys.argv[1], write)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, check=False)
    assert proc.returncode == -signal.SIGKILL
    stale = [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert len(stale) == 1 and stale[0].name.startswith(f".{path.name}.p")
    live = temporary_path(path)  # this process is alive: its temporary is never touched
    live.write_bytes(b"in progress")
    other = temporary_path(path.with_suffix(".json"))
    other.write_bytes(b"another target")
    store.save(ds, "m", "mean", layers, names, None, {})
    left = sorted(p.name for p in path.parent.iterdir() if p.name.endswith(".tmp"))
    assert left == sorted([live.name, other.name])
    assert torch.equal(store.load(ds, "m", "mean").layers[0], layers[0])


def test_stale_temporaries_of_another_host_or_an_older_prh_go_by_age(tmp_path):
    import time

    from prh.atomic import STALE_AFTER_S, clean_stale_temporaries

    target = tmp_path / "f.bin"
    legacy = tmp_path / f".f.bin.{'a' * 32}.tmp"
    foreign = tmp_path / f".f.bin.p1-elsewhere.{'b' * 32}.tmp"
    unrelated = tmp_path / ".f.bin.notours.tmp"
    for p in (legacy, foreign, unrelated):
        p.write_bytes(b"x")
    assert clean_stale_temporaries(target) == []  # young: a writer elsewhere may still be at it
    later = time.time() + STALE_AFTER_S + 1
    assert sorted(clean_stale_temporaries(target, now=later)) == sorted([legacy, foreign])
    assert unrelated.exists()


def test_missing_features_hint_names_the_stored_size(tmp_path):
    store = FeatureStore(tmp_path)
    layers, names, _ = _features()
    store.save(_Toy(), "a", "mean", layers, names, None, {})
    store.save(_Toy(), "b", "mean", layers, names, None, {})
    bigger = _Toy(8)  # e.g. `prh align` without --n opened the whole dataset
    with pytest.raises(MissingFeaturesError) as err:
        store.find_many(["a", "b"], "mean", dataset=bigger)
    first = str(err.value).splitlines()[0]
    assert "for N=8" in first and "the store has all of them for N=6: pass --n 6" in first
    with pytest.raises(MissingFeaturesError) as err:  # one model: one line
        store.find_many(["a"], "cls", dataset=bigger)
    assert "\n" not in str(err.value)
    assert "N=6, pool mean: to use those, pass --n 6 --pool mean" in str(err.value)


def test_meta_reads_the_sidecar_only(tmp_path, monkeypatch):
    import prh.features.store as store_module

    store = FeatureStore(tmp_path)
    ds = _Toy()
    layers, names, _ = _features()
    store.save(ds, "m", "mean", layers, names, None, {"bits_per_byte": 1.5})
    monkeypatch.setattr(store_module, "tensor_digest", lambda t: pytest.fail("meta() must not read tensors"))
    assert store.meta(ds, "m", "mean")["bits_per_byte"] == 1.5
    assert store.meta(ds, "m", "cls") is None and store.meta(_Toy(tweak="!"), "m", "mean") is None
