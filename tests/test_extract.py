"""The extraction loop with tiny models saved to disk (the real loading code) and the real feature store: stored
features round-trip, existing ones are skipped, --force recomputes, a failing model does not stop or delete the
others, pools are validated first, and `prh extract` end to end."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from prh.errors import InputError
from prh.features import ExtractConfig, extract
from prh.features.store import FeatureStore
from prh.models import ModelSpec
from prh.models.tiny import tiny_causal_lm, tiny_text_encoder, tiny_tokenizer, tiny_vit

TEXTS = ["grinning face", "a", "the quick brown fox jumps", "red apple", "émoji ✓ cat", "dog face"]


class FakeDataset:
    def __init__(self, texts=TEXTS, name="fake"):
        self.name = name
        self.captions = [[t] for t in texts]
        self.ids = [f"item{i}" for i in range(len(texts))]
        rng = np.random.default_rng(0)
        self._images = [Image.fromarray(rng.integers(0, 255, (40, 30, 3), dtype=np.uint8)) for _ in texts]

    def __len__(self):
        return len(self.captions)

    def image(self, i):
        return self._images[i]

    def text(self, i, caption_index=0):
        return self.captions[i][caption_index]

    def texts(self, caption_index=0):
        return [c[caption_index] for c in self.captions]

    def fingerprint(self):
        return "fp-" + "|".join(self.texts())


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    tok = tiny_tokenizer()
    tiny_causal_lm("gpt2").save_pretrained(root / "lm")
    tok.save_pretrained(root / "lm")
    tiny_text_encoder().save_pretrained(root / "enc")
    tok.save_pretrained(root / "enc")
    tiny_vit().save_pretrained(root / "vit")
    return root


def _specs(root):
    return [
        ModelSpec(name="tiny-lm", source=str(root / "lm"), adapter="hf-causal-lm", modality="language"),
        ModelSpec(name="tiny-enc", source=str(root / "enc"), adapter="hf-text-encoder", modality="language"),
        ModelSpec(
            name="tiny-vit", source=str(root / "vit"), adapter="hf-vision", modality="vision", pool="cls"
        ),
    ]


def test_extract_store_roundtrip_skip_force(tiny_dir, tmp_path):
    store = FeatureStore(tmp_path / "features")
    ds = FakeDataset()
    rows = extract(_specs(tiny_dir), ds, store, ExtractConfig(device="cpu", batch_size=4), progress=False)
    assert [r["status"] for r in rows] == ["extracted"] * 3
    assert [r["layers"] for r in rows] == [4, 3, 3]
    assert rows[0]["bpb"] is not None and rows[0]["bpb"] > 0 and rows[0]["dim"] == "32"
    lm = store.load(ds, "tiny-lm", "mean")
    assert len(lm.layers) == 4 and lm.layers[0].shape == (len(TEXTS), 32)
    assert lm.per_sample["bpb"].shape == (len(TEXTS),)
    assert lm.meta["adapter"] == "hf-causal-lm" and lm.meta["params"] > 0 and lm.meta["pool"] == "mean"
    assert store.load(ds, "tiny-vit", "cls").layer_names == ["block.0", "block.1", "block.2"]
    mtime = store.path(ds, "tiny-lm", "mean").stat().st_mtime_ns
    again = extract(_specs(tiny_dir), ds, store, ExtractConfig(device="cpu", batch_size=4), progress=False)
    assert [r["status"] for r in again] == ["cached"] * 3
    assert store.path(ds, "tiny-lm", "mean").stat().st_mtime_ns == mtime
    forced = extract(
        _specs(tiny_dir)[:1], ds, store, ExtractConfig(device="cpu", batch_size=2, force=True), progress=False
    )
    assert forced[0]["status"] == "extracted"
    relm = store.load(ds, "tiny-lm", "mean")
    for a, b in zip(lm.layers, relm.layers, strict=True):  # batch size 4 vs 2: same features
        assert torch.allclose(a, b, atol=1e-5)
    changed = FakeDataset(TEXTS[:-1] + ["a different caption"])
    assert (
        extract(_specs(tiny_dir)[:1], changed, store, ExtractConfig(device="cpu"), progress=False)[0][
            "status"
        ]
        == "extracted"
    )


def test_failing_model_keeps_others(tiny_dir, tmp_path):
    store = FeatureStore(tmp_path / "features")
    ds = FakeDataset()
    good = _specs(tiny_dir)
    extract(good[:1], ds, store, ExtractConfig(device="cpu"), progress=False)
    broken = ModelSpec(
        name="broken", source=str(tmp_path / "does-not-exist"), adapter="hf-text-encoder", modality="language"
    )
    messages = []
    rows = extract(
        [broken, good[1]], ds, store, ExtractConfig(device="cpu"), progress=False, log=messages.append
    )
    assert [r["status"] for r in rows] == ["failed", "extracted"]
    assert "broken" in rows[0]["error"] or "does-not-exist" in rows[0]["error"]
    assert any("FAILED" in m for m in messages)
    assert store.has(ds, "tiny-lm", "mean") and store.has(ds, "tiny-enc", "mean")
    stopped = extract(
        [broken, good[2]], ds, store, ExtractConfig(device="cpu", stop_on_error=True), progress=False
    )
    assert [r["status"] for r in stopped] == ["failed"]


def test_pool_checked_before_any_work(tiny_dir, tmp_path):
    store = FeatureStore(tmp_path / "f")
    with pytest.raises(InputError, match="pool='last' is not supported by model 'tiny-vit'"):
        extract(
            _specs(tiny_dir), FakeDataset(), store, ExtractConfig(pool="last", device="cpu"), progress=False
        )
    assert not (tmp_path / "f").exists() or not any((tmp_path / "f").rglob("*.safetensors"))
    with pytest.raises(InputError, match="batch_size"):
        extract(_specs(tiny_dir), FakeDataset(), store, ExtractConfig(batch_size=0), progress=False)


def test_prh_extract_cli_end_to_end(tiny_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import prh.data
    from prh.cli import app

    monkeypatch.setattr(
        prh.data, "load_dataset", lambda name, n=None, **kw: FakeDataset(TEXTS[: n or len(TEXTS)])
    )
    models_file = tmp_path / "m.toml"
    models_file.write_text(
        f'[[model]]\nname = "tiny-lm"\nsource = "{tiny_dir / "lm"}"\nadapter = "hf-causal-lm"\n'
        f'[[model]]\nname = "tiny-vit"\nsource = "{tiny_dir / "vit"}"\nadapter = "hf-vision"\n'
        '[sets]\ntiny = ["tiny-lm", "tiny-vit"]\n'
    )
    out = tmp_path / "store"
    args = [
        "extract",
        "--models",
        "tiny",
        "--dataset",
        "fake",
        "--n",
        "5",
        "--device",
        "cpu",
        "--store",
        str(out),
        "--models-file",
        str(models_file),
        "--no-progress",
        "--batch-size",
        "2",
    ]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "tiny-lm" in res.output and "extracted" in res.output and "samples/s" in res.output
    assert len(list(out.rglob("*.safetensors"))) == 2
    res = CliRunner().invoke(app, args)
    assert "cached" in res.output
    res = CliRunner().invoke(app, args[:2] + ["tiny,nonexistent-model"] + args[3:])
    assert res.exit_code != 0 and "unknown model 'nonexistent-model'" in str(res.exception)


def test_prh_extract_store_flag_and_the_deprecated_out_alias(tiny_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    import prh.data
    from prh.cli import app

    monkeypatch.setattr(
        prh.data, "load_dataset", lambda name, n=None, **kw: FakeDataset(TEXTS[: n or len(TEXTS)])
    )
    models_file = tmp_path / "m.toml"
    models_file.write_text(
        f'[[model]]\nname = "tiny-lm"\nsource = "{tiny_dir / "lm"}"\nadapter = "hf-causal-lm"\n'
    )
    args = ["extract", "--models", "tiny-lm", "--dataset", "fake", "--n", "3", "--device", "cpu"]
    args += ["--models-file", str(models_file), "--no-progress"]
    runner = CliRunner()
    store = tmp_path / "store"
    res = runner.invoke(app, args + ["--store", str(store)])
    assert res.exit_code == 0, res.output
    assert "extracted" in res.stdout and "deprecated" not in res.output
    assert len(list(store.rglob("*.safetensors"))) == 1
    # the old spelling still names the store (the features above are found) and warns once, on stderr
    res = runner.invoke(app, args + ["--out", str(store)])
    assert res.exit_code == 0, res.output
    assert "cached" in res.stdout and "deprecated" not in res.stdout
    warning = [line for line in res.stderr.splitlines() if "deprecated" in line]
    assert len(warning) == 1 and "prh extract --out" in warning[0] and f"--store {store}" in warning[0]
    old = tmp_path / "old"
    res = runner.invoke(app, args + ["--out", str(old)])
    assert res.exit_code == 0 and len(list(old.rglob("*.safetensors"))) == 1
    res = runner.invoke(app, args + ["--store", str(store), "--out", str(old)])
    assert isinstance(res.exception, InputError) and "give only --store" in str(res.exception)
    help_text = runner.invoke(app, ["extract", "--help"]).output
    assert "--store" in help_text and "--out" not in help_text  # the alias is hidden
