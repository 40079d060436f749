"""The shared image loader (prh.models.loader): every vision adapter gets bit-identical features with and without
background workers, 'auto' starts none on tiny inputs, a worker's failure reaches the caller as the dataset raised
it, ExtractConfig/`prh extract --workers` validate the count; channels_last changes EfficientNet features only by
float rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from prh.errors import ExtractionError, InputError
from prh.features import ExtractConfig
from prh.models import ModelSpec, build_adapter
from prh.models import loader as loader_mod
from prh.models.hf_vision import HFVisionAdapter
from prh.models.loader import check_workers, image_batches, resolve_workers
from prh.models.preprocess import ImageTransform
from prh.models.tiny import tiny_cnn, tiny_vit
from prh.models.torch_module import TorchModuleAdapter

SIZES = [(40, 30), (30, 50), (64, 64), (33, 47), (50, 40), (25, 25), (70, 35)]


class ImageSet:
    """The part of the PairedDataset interface vision adapters read, with ``n`` random images of varied sizes;
    ``bad`` maps a row to the exception its image raises."""

    def __init__(self, n=23, bad=None, seed=0):
        self.name = "images"
        rng = np.random.default_rng(seed)
        self._images = [
            Image.fromarray(rng.integers(0, 255, (*SIZES[i % len(SIZES)][::-1], 3), dtype=np.uint8))
            for i in range(n)
        ]
        self.bad = dict(bad or {})

    def __len__(self):
        return len(self._images)

    def image(self, i):
        if i in self.bad:
            raise self.bad[i]
        return self._images[i]


def _same(a, b):
    return len(a.layers) == len(b.layers) and all(torch.equal(x, y) for x, y in zip(a.layers, b.layers))


def _vit_adapter():
    tf = ImageTransform.from_hf_config(
        {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    )
    spec = ModelSpec(name="tiny-vit", source="tiny", adapter="hf-vision", modality="vision", pool="cls")
    return HFVisionAdapter(spec, device="cpu", model=tiny_vit(), transform=tf)


def _cnn_adapter():
    spec = ModelSpec(name="tiny-cnn", source="tiny", adapter="torch-module", modality="vision")
    return TorchModuleAdapter(
        spec,
        device="cpu",
        module=tiny_cnn(),
        layers=["stem", "blocks.0", "blocks.1", "head:input"],
        transform=ImageTransform(size=(20, 20), crop=(16, 16)),
    )


@pytest.mark.parametrize("make", [_vit_adapter, _cnn_adapter], ids=["hf-vision", "torch-module"])
def test_features_bit_identical_with_and_without_workers(make):
    ad = make()
    ds = ImageSet(23)  # 8 batches of 3, the last one short
    serial = ad.extract(ds, batch_size=3, workers=0)
    assert serial.meta["image_workers"] == 0
    for workers in (1, 2):
        parallel = ad.extract(ds, batch_size=3, workers=workers)
        assert parallel.meta["image_workers"] == workers
        assert _same(serial, parallel)


def test_onnx_vision_bit_identical_with_workers(tmp_path):
    from test_adapters import _tiny_onnx  # noqa: PLC0415 - the tiny ONNX graph of the adapter tests

    path = tmp_path / "tiny.onnx"
    _tiny_onnx(str(path))
    spec = ModelSpec(name="tiny-onnx", source=str(path), adapter="onnx", modality="vision", pool="mean")
    ad = build_adapter(spec, device="cpu")
    ds = ImageSet(11)
    assert _same(ad.extract(ds, batch_size=4, workers=0), ad.extract(ds, batch_size=4, workers=2))


def test_channels_last_cnn_and_worker_batches():
    ad = _cnn_adapter()
    assert ad.channels_last is False  # user modules: off unless asked
    ds = ImageSet(10)
    plain = ad.extract(ds, batch_size=4, workers=0)
    ad.set_channels_last(True)
    assert ad.model.stem[0].weight.is_contiguous(memory_format=torch.channels_last)
    nhwc = ad.extract(ds, batch_size=4, workers=0)
    assert nhwc.meta["channels_last"] is True
    assert _same(nhwc, ad.extract(ds, batch_size=4, workers=2))  # stacked NHWC in the workers: same floats
    for a, b in zip(plain.layers, nhwc.layers, strict=True):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
    with image_batches(ds, ad.transform, 4, workers=1, channels_last=True) as stream:
        rows, pixels = next(iter(stream))
    assert rows == [0, 1, 2, 3] and pixels.is_contiguous(memory_format=torch.channels_last)


def test_auto_workers(monkeypatch):
    monkeypatch.setattr(loader_mod, "available_cpus", lambda: 8)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 8)
    gpu = "cuda"  # only its type is read
    assert resolve_workers("auto", n=6, batch_size=4, device=gpu) == 0  # fewer than 4 batches: not worth it
    assert resolve_workers("auto", n=63, batch_size=16, device=gpu) == 0
    assert resolve_workers("auto", n=64, batch_size=16, device=gpu) == 4  # min(4, 8 - 1): CPUs idle on a GPU
    assert (
        resolve_workers("auto", n=10_000, batch_size=16, device="cpu") == 0
    )  # torch's threads use every core
    monkeypatch.setattr(torch, "get_num_threads", lambda: 6)
    assert resolve_workers("auto", n=10_000, batch_size=16, device="cpu") == 2  # the cores torch leaves free
    assert resolve_workers("auto", n=10_000, batch_size=16) == 2  # no device: the CPU
    monkeypatch.setattr(loader_mod, "available_cpus", lambda: 2)
    assert resolve_workers("auto", n=10_000, batch_size=16, device=gpu) == 1
    monkeypatch.setattr(loader_mod, "available_cpus", lambda: 1)
    assert resolve_workers("auto", n=10_000, batch_size=16, device=gpu) == 0
    assert resolve_workers(3, n=2, batch_size=16) == 3  # a number is used as given
    monkeypatch.undo()
    ad = _vit_adapter()
    assert ad.extract(ImageSet(5), batch_size=2).meta["image_workers"] == 0  # the default is "auto"


@pytest.mark.parametrize("bad", [-1, 1.5, True, "two", None, "AUTO"])
def test_worker_count_is_validated(bad):
    with pytest.raises(
        InputError, match=r"workers=.* must be 'auto' or a number of background image workers"
    ):
        check_workers(bad)
    with pytest.raises(InputError, match=r"workers="):
        ExtractConfig(workers=bad)
    with pytest.raises(InputError, match=r"workers="):
        _vit_adapter().extract(ImageSet(4), batch_size=2, workers=bad)


def test_config_workers_and_shard_size_round_trip():
    cfg = ExtractConfig(workers=2, shard_size=100)
    assert ExtractConfig.from_dict(cfg.to_dict()) == cfg
    assert ExtractConfig().workers == "auto" and ExtractConfig().shard_size == 4096
    with pytest.raises(InputError, match=r"shard_size=-1 must be at least 0"):
        ExtractConfig(shard_size=-1)


@pytest.mark.parametrize("workers", [0, 2])
def test_failing_image_keeps_its_error(workers):
    ad = _vit_adapter()
    msg = "image of item 'x7' is corrupt (cannot identify image file); remove it"
    with pytest.raises(InputError) as info:
        ad.extract(ImageSet(12, bad={7: InputError(msg)}), batch_size=3, workers=workers)
    assert str(info.value) == msg  # the same class and message, not a worker traceback
    if workers:  # a foreign exception from a worker: named, with the item
        with pytest.raises(ExtractionError, match=r"image 4 could not be prepared .*ValueError: broken"):
            ad.extract(ImageSet(12, bad={4: ValueError("broken")}), batch_size=3, workers=workers)
    else:  # in the calling process: the exception itself
        with pytest.raises(ValueError, match="broken"):
            ad.extract(ImageSet(12, bad={4: ValueError("broken")}), batch_size=3, workers=workers)


def test_cli_workers_and_shard_size_flags(monkeypatch, tmp_path):
    from typer.testing import CliRunner

    import prh.data
    from prh.cli import app

    seen = {}

    def fake_extract(specs, ds, store, config, **_kw):
        seen["config"] = config
        return []

    monkeypatch.setattr(prh.data, "load_dataset", lambda name, n=None, **kw: ImageSet(n or 4))
    monkeypatch.setattr("prh.features.extract", fake_extract)
    runner = CliRunner()
    base = ["extract", "--models", "effnet-lite0", "--n", "4", "--store", str(tmp_path), "--no-progress"]
    res = runner.invoke(app, [*base, "--workers", "2", "--shard-size", "100"])
    assert res.exit_code == 0, res.output
    assert seen["config"].workers == 2 and seen["config"].shard_size == 100
    res = runner.invoke(app, base)
    assert res.exit_code == 0, res.output
    assert seen["config"].workers == "auto" and seen["config"].shard_size == 4096
    res = runner.invoke(app, [*base, "--workers", "many"])
    assert res.exit_code != 0
    assert "workers='many' must be 'auto' or a number" in f"{res.output} {res.exception}"


@pytest.mark.slow
def test_channels_last_efficientnet_equals_nchw_to_float_rounding():
    """EfficientNet-Lite0 runs NHWC by default. Measured on 64 OpenMoji images (lite0 and lite2, CPU): the largest
    difference to NCHW over all layers is 1.5e-6 x the layer's largest |feature| (a dozen float32 ulps from
    re-ordered convolution sums); the bound 1e-5 x max|feature| leaves ~7x room for other CPUs' kernels."""
    from prh.models import availability, get_model

    spec = get_model("effnet-lite0")
    ok, why = availability(spec)
    if not ok:
        pytest.skip(why)
    from prh.data import load_dataset

    ds = load_dataset("openmoji", n=24)
    ad = build_adapter(spec, device="cpu")
    assert ad.channels_last is True
    nhwc = ad.extract(ds, batch_size=8, workers=0)
    assert _same(nhwc, ad.extract(ds, batch_size=8, workers=2))
    ad.set_channels_last(False)
    nchw = ad.extract(ds, batch_size=8, workers=0)
    for name, a, b in zip(nchw.layer_names, nhwc.layers, nchw.layers, strict=True):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max(), name
