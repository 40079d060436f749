"""Hugging Face text encoders (BERT, MPNet, MiniLM, ...): every hidden state, pooled over the attention mask."""

from __future__ import annotations

import torch

from prh.models.base import (
    Adapter,
    LayerBuffer,
    Progress,
    batches,
    call_progress,
    count_params,
    forward_guard,
    loading,
    resolve_device,
    resolve_dtype,
)
from prh.models.pooling import pool_tokens
from prh.models.spec import FeatureResult, ModelSpec
from prh.models.text import ensure_pad_token, length_order, load_text_model, pad_batch, tokenize


class HFTextEncoderAdapter(Adapter):
    """Run a bidirectional text encoder over captions: L+1 hidden states (embeddings + every layer), pooled.

    Padding is masked out of attention and pooling, batches are length-sorted, rows are restored to dataset order.
    ``options``: ``max_length`` (default: the tokenizer's limit, at most 512), ``caption_index``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        device: str = "auto",
        dtype: str = "float32",
        device_map: str | None = None,
        trust_remote_code: bool = False,
        model=None,
        tokenizer=None,
    ) -> None:
        self.spec = spec
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        if model is None:
            from transformers import AutoModel

            trust = trust_remote_code or spec.trust_remote_code
            with loading(spec):
                model, tokenizer, _ = load_text_model(spec, AutoModel, self.dtype, device_map, trust)
        if device_map is None:
            model = model.to(self.device, self.dtype)
        else:
            self.device = model.get_input_embeddings().weight.device
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pad_id = ensure_pad_token(tokenizer)
        self.n_params = count_params(self.model)

    def _max_length(self) -> int:
        if self.spec.options.get("max_length"):
            return int(self.spec.options["max_length"])
        limit = getattr(self.tokenizer, "model_max_length", 512) or 512
        pos = getattr(self.model.config, "max_position_embeddings", 512) or 512
        return int(min(limit, pos, 512))

    @torch.inference_mode()
    def _extract(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        caption_index = int(self.spec.options.get("caption_index", 0))
        texts = dataset.texts(caption_index)
        ids = tokenize(self.tokenizer, texts, self._max_length())
        order = length_order(ids)
        buf = LayerBuffer(len(texts))
        for chunk in batches(order, batch_size):
            input_ids, mask = pad_batch([ids[i] for i in chunk], self.pad_id)
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            with forward_guard(self.spec, batch_size):
                out = self.model(input_ids=input_ids, attention_mask=mask, output_hidden_states=True)
                pooled = [pool_tokens(h, pool, mask) for h in out.hidden_states]
            buf.put(chunk, pooled)
            call_progress(progress, len(chunk))
        layers = buf.result()
        names = ["embed"] + [f"layer.{i}" for i in range(len(layers) - 1)]
        return FeatureResult(layers=layers, layer_names=names, meta={"caption_index": caption_index})
