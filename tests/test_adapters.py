"""Every adapter on tiny randomly initialised models (no download): shapes, layer counts, pooling and bpb against
hand computations, independence of batch composition and padding, and the load-time errors."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from prh.errors import ExtractionError, InputError, ModelLoadError, OfflineError
from prh.models import ModelSpec, build_adapter
from prh.models.bpb import LOG2_E
from prh.models.hf_causal_lm import HFCausalLMAdapter
from prh.models.hf_text_encoder import HFTextEncoderAdapter
from prh.models.hf_vision import HFVisionAdapter
from prh.models.preprocess import ImageTransform
from prh.models.tiny import tiny_causal_lm, tiny_cnn, tiny_text_encoder, tiny_tokenizer, tiny_vit
from prh.models.torch_module import TorchModuleAdapter

TEXTS = [
    "grinning face",
    "a",
    "the quick brown fox jumps over the lazy dog and more",
    "red apple",
    "émoji ✓ 🐱 cat",
    "dog face",
    "black and white photograph of a city street",
]


class FakeDataset:
    """The PairedDataset interface, in memory."""

    def __init__(self, texts=TEXTS, n_images=None, seed=0):
        self.name = "fake"
        self.captions = [[t] for t in texts]
        self.ids = [f"item{i}" for i in range(len(texts))]
        rng = np.random.default_rng(seed)
        n = n_images or len(texts)
        sizes = [(40, 30), (30, 50), (64, 64), (33, 47), (50, 40), (25, 25), (70, 35)]
        self._images = [
            Image.fromarray(rng.integers(0, 255, (*sizes[i % len(sizes)][::-1], 3), dtype=np.uint8))
            for i in range(n)
        ]

    def __len__(self):
        return len(self.captions)

    def image(self, i):
        return self._images[i]

    def text(self, i, caption_index=0):
        return self.captions[i][caption_index]

    def texts(self, caption_index=0):
        return [c[caption_index] for c in self.captions]

    def fingerprint(self):
        return "fake-" + str(len(self))


def _spec(adapter, modality, pool="mean", **options):
    return ModelSpec(
        name=f"tiny-{adapter}", source="tiny", adapter=adapter, modality=modality, pool=pool, options=options
    )


# ----------------------------------------------------------------------------------------------- causal LM


@pytest.fixture
def tokenizer():
    return tiny_tokenizer()


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_causal_lm_shapes_pooling_bpb_by_hand(arch, tokenizer):
    model = tiny_causal_lm(arch)
    assert tokenizer.pad_token is None  # the adapter must fall back to EOS
    ad = HFCausalLMAdapter(_spec("hf-causal-lm", "language"), device="cpu", model=model, tokenizer=tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token
    ds = FakeDataset()
    res_mean = ad.extract(ds, batch_size=3, pool="mean")
    res_last = ad.extract(ds, batch_size=3, pool="last")
    assert len(res_mean.layers) == 4 and res_mean.layer_names == ["embed", "layer.0", "layer.1", "layer.2"]
    assert all(t.shape == (len(TEXTS), 32) and t.dtype == torch.float32 for t in res_mean.layers)
    assert res_mean.per_sample["bpb"].shape == (len(TEXTS),)
    assert res_mean.meta["bits_per_byte"] == pytest.approx(float(res_mean.per_sample["bpb"].mean()))
    for i, text in enumerate(TEXTS):  # each text alone, no padding: hand pooling and hand bpb
        ids = torch.tensor([tokenizer(text)["input_ids"]])
        with torch.no_grad():
            out = model(input_ids=ids, output_hidden_states=True)
        for layer, h in enumerate(out.hidden_states):
            assert torch.allclose(res_mean.layers[layer][i], h[0].mean(0), atol=1e-5)
            assert torch.allclose(res_last.layers[layer][i], h[0, -1], atol=1e-5)
        logp = torch.log_softmax(out.logits[0].double(), dim=-1)
        nats = -sum(float(logp[t, ids[0, t + 1]]) for t in range(ids.shape[1] - 1))
        want = nats * LOG2_E / len(text.encode("utf-8"))
        assert float(res_mean.per_sample["bpb"][i]) == pytest.approx(want, abs=1e-4)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_causal_lm_features_independent_of_batching(arch, tokenizer):
    ad = HFCausalLMAdapter(
        _spec("hf-causal-lm", "language"), device="cpu", model=tiny_causal_lm(arch), tokenizer=tokenizer
    )
    ds = FakeDataset()
    for pool in ("mean", "last"):
        one = ad.extract(ds, batch_size=1, pool=pool)
        three = ad.extract(ds, batch_size=3, pool=pool)
        big = ad.extract(ds, batch_size=len(TEXTS), pool=pool)
        for a, b, c in zip(one.layers, three.layers, big.layers, strict=True):
            assert torch.allclose(a, b, atol=1e-5) and torch.allclose(a, c, atol=1e-5)
        assert torch.allclose(one.per_sample["bpb"], three.per_sample["bpb"], atol=1e-5)


def test_causal_lm_bos_tokenizer_and_pool_check():
    tok = tiny_tokenizer(bos=True)
    assert tok("ab")["input_ids"][0] == 0
    ad = HFCausalLMAdapter(
        _spec("hf-causal-lm", "language"), device="cpu", model=tiny_causal_lm(), tokenizer=tok
    )
    res = ad.extract(FakeDataset(), batch_size=2)
    assert torch.isfinite(res.per_sample["bpb"]).all() and (res.per_sample["bpb"] > 0).all()
    with pytest.raises(Exception, match="pool='cls' is not supported"):
        ad.extract(FakeDataset(), batch_size=2, pool="cls")


def test_out_of_memory_becomes_extraction_error(tokenizer, monkeypatch):
    ad = HFCausalLMAdapter(
        _spec("hf-causal-lm", "language"), device="cpu", model=tiny_causal_lm(), tokenizer=tokenizer
    )

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(ad, "model", boom)
    with pytest.raises(ExtractionError, match="smaller --batch-size"):
        ad.extract(FakeDataset(), batch_size=4)


# ----------------------------------------------------------------------------------------------- text encoder


def test_text_encoder_shapes_pooling_batching(tokenizer):
    model = tiny_text_encoder()
    ad = HFTextEncoderAdapter(
        _spec("hf-text-encoder", "language"), device="cpu", model=model, tokenizer=tokenizer
    )
    ds = FakeDataset()
    one = ad.extract(ds, batch_size=1)
    three = ad.extract(ds, batch_size=3)
    assert len(one.layers) == 3 and one.layer_names == ["embed", "layer.0", "layer.1"]
    for a, b in zip(one.layers, three.layers, strict=True):
        assert a.shape == (len(TEXTS), 32)
        assert torch.allclose(a, b, atol=1e-5)
    ids = torch.tensor([tokenizer(TEXTS[2])["input_ids"]])
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
    for layer, h in enumerate(out.hidden_states):
        assert torch.allclose(three.layers[layer][2], h[0].mean(0), atol=1e-5)
    cls = ad.extract(ds, batch_size=3, pool="cls")
    assert torch.allclose(cls.layers[-1][2], out.hidden_states[-1][0, 0], atol=1e-5)


# ----------------------------------------------------------------------------------------------- vision


def test_image_transform_by_hand():
    img = Image.new("RGB", (40, 20), (255, 128, 0))
    tf = ImageTransform(size=(10, 10), crop=(8, 8), resize_mode="shortest_edge", resample="bilinear")
    arr = tf(img)
    assert arr.shape == (3, 8, 8) and arr.dtype == np.float32
    want = (np.array([255, 128, 0]) / 255.0 - np.array(tf.mean)) / np.array(tf.std)
    assert np.allclose(arr[:, 4, 4], want, atol=1e-5)
    # shortest edge: 40x20 -> 20x10, center crop 8x8 takes columns 6..13 of the resized image
    grad = Image.fromarray(np.tile(np.arange(40, dtype=np.uint8)[None, :, None] * 6, (20, 1, 3)))
    out = ImageTransform(size=(10, 10), crop=(8, 8), resample="nearest", mean=(0, 0, 0), std=(1, 1, 1))(grad)
    resized = np.asarray(grad.resize((20, 10), Image.Resampling.NEAREST), dtype=np.float32) / 255.0
    assert np.allclose(out[0], resized[1:9, 6:14, 0])
    hf = ImageTransform.from_hf_config(
        {
            "do_resize": True,
            "size": {"shortest_edge": 256},
            "do_center_crop": True,
            "crop_size": {"height": 224, "width": 224},
            "resample": 3,
            "image_mean": [0.5, 0.5, 0.5],
            "image_std": [0.5, 0.5, 0.5],
        }
    )
    assert (hf.size, hf.crop, hf.resample, hf.mean, hf.resize_mode) == (
        (256, 256),
        (224, 224),
        "bicubic",
        (0.5,) * 3,
        "shortest_edge",
    )
    vit = ImageTransform.from_hf_config({"size": {"height": 32, "width": 32}, "resample": 2})
    assert (vit.size, vit.crop, vit.resize_mode) == ((32, 32), None, "exact")


def test_hf_vision_shapes_cls_by_hand_and_batching():
    model = tiny_vit()
    tf = ImageTransform.from_hf_config(
        {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}
    )
    ad = HFVisionAdapter(_spec("hf-vision", "vision", pool="cls"), device="cpu", model=model, transform=tf)
    ds = FakeDataset()
    one = ad.extract(ds, batch_size=1)
    three = ad.extract(ds, batch_size=3)
    assert len(one.layers) == 3 and one.layer_names == ["block.0", "block.1", "block.2"]
    for a, b in zip(one.layers, three.layers, strict=True):
        assert a.shape == (len(ds), 32) and torch.allclose(a, b, atol=1e-5)
    pixels = tf.batch([ds.image(4)])
    with torch.no_grad():
        out = model(pixel_values=pixels, output_hidden_states=True)
    for layer in range(3):
        assert torch.allclose(three.layers[layer][4], out.hidden_states[layer + 1][0, 0], atol=1e-5)
    mean = ad.extract(ds, batch_size=3, pool="mean")
    assert torch.allclose(mean.layers[1][4], out.hidden_states[2][0].mean(0), atol=1e-5)


def test_hf_vision_loads_local_folder_with_preprocessor_config(tmp_path):
    tiny_vit().save_pretrained(tmp_path)
    (tmp_path / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "size": {"height": 32, "width": 32},
                "resample": 2,
                "image_mean": [0.5] * 3,
                "image_std": [0.5] * 3,
                "do_normalize": True,
                "do_rescale": True,
                "rescale_factor": 1 / 255,
            }
        )
    )
    spec = ModelSpec(
        name="local-vit", source=str(tmp_path), adapter="hf-vision", modality="vision", pool="cls"
    )
    ad = build_adapter(spec, device="cpu")
    assert ad.transform.output_size == (32, 32) and ad.transform.mean == (0.5, 0.5, 0.5)
    assert len(ad.extract(FakeDataset(), batch_size=4).layers) == 3


# ----------------------------------------------------------------------------------------------- torch module


def test_torch_module_hooks_gap_by_hand_and_batching():
    net = tiny_cnn()
    tf = ImageTransform(size=(20, 20), crop=(16, 16))
    spec = _spec("torch-module", "vision")
    ad = TorchModuleAdapter(
        spec,
        device="cpu",
        module=net,
        layers=["stem", "blocks.0", "blocks.1", "head:input"],
        layer_names=["stem", "b0", "b1", "head_in"],
        transform=tf,
    )
    ds = FakeDataset()
    one = ad.extract(ds, batch_size=1)
    three = ad.extract(ds, batch_size=3)
    assert one.layer_names == ["stem", "b0", "b1", "head_in"]
    assert one.dims == [8, 16, 32, 32]
    for a, b in zip(one.layers, three.layers, strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    x = tf.batch([ds.image(3)])
    with torch.no_grad():
        s = net.stem(x)
        b0 = net.blocks[0](s)
        b1 = net.blocks[1](b0)
    assert torch.allclose(three.layers[0][3], s[0].mean(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(three.layers[1][3], b0[0].mean(dim=(1, 2)), atol=1e-5)
    assert torch.allclose(three.layers[3][3], b1[0].mean(dim=(1, 2)), atol=1e-5)  # head input = GAP of b1
    with pytest.raises(Exception, match="not a submodule"):
        TorchModuleAdapter(spec, device="cpu", module=tiny_cnn(), layers=["nope"], transform=tf)


def _effnet_spec(**options):
    return ModelSpec(
        name="my-effnet",
        source="local",
        adapter="torch-module",
        modality="vision",
        options={"builder": "efficientnet-lite", **options},
    )


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (
            {"arch": "efficientnet-lite0"},
            r"model 'my-effnet': options.image_size is missing; give the input size",
        ),
        ({"image_size": 224}, r"model 'my-effnet': options.arch is missing"),
        ({"arch": "efficientnet-lite0", "image_size": "224"}, r"options.image_size='224' must be a positive"),
        ({"arch": "efficientnet-lite0", "image_size": 0}, r"options.image_size=0 must be a positive"),
    ],
)
def test_efficientnet_input_size_comes_from_the_toml_options(options, match):
    """The input size per model is data (registry.toml options), not a table of model names in the code."""
    with pytest.raises(InputError, match=match):
        TorchModuleAdapter(_effnet_spec(**options), device="cpu")


def test_efficientnet_unknown_arch_and_the_registry_sizes():
    from prh.models import get_model

    assert [get_model(f"effnet-lite{k}").options["image_size"] for k in range(3)] == [224, 240, 260]
    pytest.importorskip("efficientnet_lite_pytorch")
    with pytest.raises(InputError, match=r"options.arch='efficientnet-lite9' is not an architecture"):
        TorchModuleAdapter(_effnet_spec(arch="efficientnet-lite9", image_size=224), device="cpu")
    ad = TorchModuleAdapter(_effnet_spec(arch="efficientnet-lite1", image_size=240), device="cpu")
    assert ad.transform == ImageTransform.imagenet(240) and ad.transform.output_size == (240, 240)
    assert ad.layer_names[0] == "stem" and ad.layer_names[-1] == "head" and len(ad.layer_names) == 23


# ----------------------------------------------------------------------------------------------- timm / onnx


def test_timm_missing_gives_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)
    spec = ModelSpec(
        name="vit_tiny",
        source="vit_tiny_patch16_224.augreg_in21k",
        adapter="timm",
        modality="vision",
        pool="cls",
    )
    with pytest.raises(ModelLoadError, match=r"prh\[timm\]"):
        build_adapter(spec, device="cpu")


def test_timm_adapter_hooks_blocks_cls():
    """The timm path on a timm-like module (blocks.i outputs, CLS) without timm installed."""
    from prh.models.timm_adapter import TimmAdapter

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(6, 6)

        def forward(self, x):
            return x + self.lin(x)

    class FakeViT(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.patch = torch.nn.Conv2d(3, 6, 8, stride=8)
            self.blocks = torch.nn.Sequential(Block(), Block())
            self.pretrained_cfg = {
                "input_size": (3, 16, 16),
                "crop_pct": 1.0,
                "interpolation": "bilinear",
                "mean": (0.5, 0.5, 0.5),
                "std": (0.5, 0.5, 0.5),
            }

        def forward(self, x):
            t = self.patch(x).flatten(2).transpose(1, 2)
            return self.blocks(t)

    m = FakeViT()
    spec = ModelSpec(name="fake", source="fake", adapter="timm", modality="vision", pool="cls")
    ad = TimmAdapter(spec, device="cpu", model=m)
    res = ad.extract(FakeDataset(), batch_size=3)
    assert res.layer_names == ["block.0", "block.1"] and ad.transform.output_size == (16, 16)
    x = ad.transform.batch([FakeDataset().image(0)])
    with torch.no_grad():
        t0 = m.blocks[0](m.patch(x).flatten(2).transpose(1, 2))
    assert torch.allclose(res.layers[0][0], t0[0, 0], atol=1e-5)


def _tiny_onnx(path):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = [rng.standard_normal((3, 3)).astype(np.float32) for _ in range(2)]
    nodes = [
        helper.make_node("Reshape", ["pixel_values", "shape"], ["flat"], name="/embed/Reshape"),
        helper.make_node("Transpose", ["flat"], ["tokens"], perm=[0, 2, 1], name="/embed/Transpose"),
    ]
    prev = "tokens"
    for i in range(2):
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"/blocks.{i}/MatMul"),
            helper.make_node("Tanh", [f"m{i}"], [f"t{i}"], name=f"/blocks.{i}/Tanh"),
            helper.make_node("Add", [prev, f"t{i}"], [f"/blocks.{i}/Add_output_0"], name=f"/blocks.{i}/Add"),
        ]
        prev = f"/blocks.{i}/Add_output_0"
    nodes.append(
        helper.make_node("ReduceMean", [prev], ["out"], axes=[1], keepdims=0, name="/head/ReduceMean")
    )
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("pixel_values", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(np.array([0, 3, 64], dtype=np.int64), "shape")]
        + [numpy_helper.from_array(w[i], f"w{i}") for i in range(2)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return w


def test_onnx_adds_block_outputs_and_pools(tmp_path):
    path = tmp_path / "tiny.onnx"
    w = _tiny_onnx(str(path))
    spec = ModelSpec(name="tiny-onnx", source=str(path), adapter="onnx", modality="vision", pool="mean")
    ad = build_adapter(spec, device="cpu")
    assert ad.outputs == ["/blocks.0/Add_output_0", "/blocks.1/Add_output_0"]
    ds = FakeDataset()
    res = ad.extract(ds, batch_size=3)
    assert res.dims == [3, 3]
    x = ad.transform.batch([ds.image(5)]).numpy().reshape(1, 3, 64).transpose(0, 2, 1)
    h0 = x + np.tanh(x @ w[0])
    h1 = h0 + np.tanh(h0 @ w[1])
    assert np.allclose(res.layers[0][5].numpy(), h0[0].mean(0), atol=1e-5)
    assert np.allclose(res.layers[1][5].numpy(), h1[0].mean(0), atol=1e-5)
    cls = ad.extract(ds, batch_size=2, pool="cls")
    assert np.allclose(cls.layers[1][5].numpy(), h1[0, 0], atol=1e-5)


def _tiny_onnx_text(folder):
    """A 2-block ONNX text model (embedding lookup, residual tanh blocks) plus its tokenizer, in ``folder``."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto, helper, numpy_helper

    tok = tiny_tokenizer()
    tok.save_pretrained(str(folder))
    rng = np.random.default_rng(1)
    emb = rng.standard_normal((len(tok), 4)).astype(np.float32)
    w = [rng.standard_normal((4, 4)).astype(np.float32) for _ in range(2)]
    nodes = [
        helper.make_node("Gather", ["emb", "input_ids"], ["tokens0"], name="/embeddings/Gather"),
        helper.make_node(
            "Cast", ["attention_mask"], ["maskf"], to=TensorProto.FLOAT, name="/embeddings/Cast"
        ),
        helper.make_node("Unsqueeze", ["maskf", "axis"], ["mask3"], name="/embeddings/Unsqueeze"),
        helper.make_node("Mul", ["tokens0", "mask3"], ["tokens"], name="/embeddings/Mul"),
    ]
    prev = "tokens"
    for i in range(2):
        nodes += [
            helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"], name=f"/encoder/layer.{i}/MatMul"),
            helper.make_node("Tanh", [f"m{i}"], [f"t{i}"], name=f"/encoder/layer.{i}/Tanh"),
            helper.make_node(
                "Add", [prev, f"t{i}"], [f"/encoder/layer.{i}/Add_output_0"], name=f"/encoder/layer.{i}/Add"
            ),
        ]
        prev = f"/encoder/layer.{i}/Add_output_0"
    graph = helper.make_graph(
        nodes,
        "tiny-text",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
            helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"]),
        ],
        [helper.make_tensor_value_info(prev, TensorProto.FLOAT, ["batch", "seq", 4])],
        initializer=[
            numpy_helper.from_array(emb, "emb"),
            numpy_helper.from_array(np.array([2], dtype=np.int64), "axis"),
        ]
        + [numpy_helper.from_array(w[i], f"w{i}") for i in range(2)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = folder / "tiny-text.onnx"
    onnx.save(model, str(path))
    return path, tok, emb, w


def test_onnx_text_shares_the_length_sorted_loop(tmp_path):
    """The ONNX text path runs through the same tokenise -> length-sort -> pad loop: rows in dataset order,
    padding masked, features independent of the batch size and equal to each text computed alone."""
    path, tok, emb, w = _tiny_onnx_text(tmp_path)
    spec = ModelSpec(
        name="tiny-onnx-text", source=str(path), adapter="onnx", modality="language", pool="mean"
    )
    ad = build_adapter(spec, device="cpu")
    assert ad.outputs == ["/encoder/layer.0/Add_output_0", "/encoder/layer.1/Add_output_0"]
    ds = FakeDataset()
    one = ad.extract(ds, batch_size=1)
    three = ad.extract(ds, batch_size=3)
    assert one.layer_names == ["layer.0", "layer.1"] and one.dims == [4, 4]
    for a, b in zip(one.layers, three.layers, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    for i, text in enumerate(TEXTS):  # each text alone, no padding: hand computation
        x = emb[tok(text)["input_ids"]]
        h0 = x + np.tanh(x @ w[0])
        h1 = h0 + np.tanh(h0 @ w[1])
        assert np.allclose(three.layers[0][i].numpy(), h0.mean(0), atol=1e-5)
        assert np.allclose(three.layers[1][i].numpy(), h1.mean(0), atol=1e-5)


# ----------------------------------------------------------------------------------------------- load errors


def test_remote_code_refused_without_flag(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "model_type": "prh-custom-test",
                "architectures": ["CustomLM"],
                "auto_map": {
                    "AutoConfig": "configuration_custom.CustomConfig",
                    "AutoModelForCausalLM": "modeling_custom.CustomLM",
                    "AutoTokenizer": ["tokenization_custom.CustomTokenizer", None],
                },
            }
        )
    )
    (tmp_path / "tokenizer_config.json").write_text(
        json.dumps({"auto_map": {"AutoTokenizer": ["tokenization_custom.CustomTokenizer", None]}})
    )
    spec = ModelSpec(name="custom", source=str(tmp_path), adapter="hf-causal-lm", modality="language")
    with pytest.raises(ModelLoadError, match="--trust-remote-code"):
        build_adapter(spec, device="cpu")


def test_hub_unreachable_is_offline_error(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    spec = ModelSpec(
        name="nope",
        source="prh-test-org/definitely-not-cached-model",
        adapter="hf-text-encoder",
        modality="language",
    )
    with pytest.raises(OfflineError, match="offline"):
        build_adapter(spec, device="cpu")
