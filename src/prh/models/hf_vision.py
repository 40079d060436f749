"""Hugging Face vision transformers (ViT, DINOv2, CLIP / SigLIP vision towers, ...): every block's hidden state,
CLS or mean-token pooling, preprocessing with PIL + numpy (no torchvision)."""

from __future__ import annotations

import torch

from prh.models.adapters import register_adapter
from prh.models.base import Adapter, count_params
from prh.models.batching import LayerBuffer, Progress, call_progress
from prh.models.device import resolve_device, resolve_dtype
from prh.models.guards import forward_guard, loading
from prh.models.loader import image_batches
from prh.models.pooling import pool_tokens
from prh.models.preprocess import ImageTransform, read_preprocessor_config
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec
from prh.models.text import dtype_kwarg, hf_source


def vision_tower(model):
    """The image tower of a two-tower model (CLIP, SigLIP: ``.vision_model``), else the model itself."""
    config = getattr(model, "config", None)
    if getattr(config, "vision_config", None) is not None and hasattr(model, "vision_model"):
        return model.vision_model
    return model


@register_adapter("hf-vision", pools=("cls", "mean"), modality="vision")
class HFVisionAdapter(Adapter):
    """Run a vision transformer over images: the output of every block (L hidden states, the embedding output
    excluded, like the reference's ``blocks.i`` features), pooled with the CLS token or the mean over tokens.

    Preprocessing follows the model's ``preprocessor_config.json`` (size, crop, resample, mean, std) implemented
    with PIL/numpy; ``options`` may override ``image_size``, ``mean``, ``std``, ``resample``;
    ``options["include_embeddings"] = true`` adds the patch-embedding output as a first layer.
    """

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "auto",
        dtype: str = "float32",
        device_map: str | None = None,
        trust_remote_code: bool = False,
        model=None,
        transform: ImageTransform | None = None,
    ) -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if model is None:
            from transformers import AutoModel

            trust = trust_remote_code  # the grant; the entry can only ask (prh.models.trust)
            with loading(spec):
                source, kwargs = hf_source(spec)
                model = AutoModel.from_pretrained(
                    source, trust_remote_code=trust, **kwargs, **dtype_kwarg(self.dtype)
                )
                if transform is None:
                    cfg = read_preprocessor_config(source, spec.revision)
                    size = int(
                        getattr(getattr(model.config, "vision_config", model.config), "image_size", 224)
                    )
                    transform = ImageTransform.from_hf_config(cfg or {}, default_size=size)
        if transform is None:
            size = int(getattr(getattr(model.config, "vision_config", model.config), "image_size", 224))
            transform = ImageTransform(size=(size, size), crop=None, resize_mode="exact")
        self.transform = ImageTransform.from_options(spec.options, transform)
        self.model = vision_tower(model).to(self.device, self.dtype).eval()
        self.n_params = count_params(self.model)

    @torch.inference_mode()
    def _extract(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        n = len(dataset)
        buf = LayerBuffer(n)
        include_embed = bool(self.spec.options.get("include_embeddings", False))
        with image_batches(dataset, self.transform, batch_size, self.workers, self.device) as stream:
            for chunk, pixels in stream:
                with forward_guard(self.spec, batch_size):
                    out = self.model(pixel_values=pixels.to(self.dtype), output_hidden_states=True)
                    states = out.hidden_states if include_embed else out.hidden_states[1:]
                    pooled = [pool_tokens(h, pool) for h in states]
                buf.put(chunk, pooled)
                call_progress(progress, len(chunk))
        layers = buf.result()
        names = (["embed"] if include_embed else []) + [
            f"block.{i}" for i in range(len(layers) - include_embed)
        ]
        return FeatureResult(
            layers=layers,
            layer_names=names,
            meta={"image_size": list(self.transform.output_size), "preprocess": self.transform.__dict__ | {}},
        )
