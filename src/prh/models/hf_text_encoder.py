"""Hugging Face text encoders (BERT, MPNet, MiniLM, ...): every hidden state, pooled over the attention mask."""

from __future__ import annotations

import torch

from prh.models.adapters import register_adapter
from prh.models.base import count_params
from prh.models.batching import Progress
from prh.models.device import resolve_device, resolve_dtype
from prh.models.guards import loading
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec
from prh.models.text import HFTextAdapter, ensure_pad_token, hidden_state_names, load_text_model, tokenize


@register_adapter("hf-text-encoder", pools=("mean", "cls", "last"), modality="language")
class HFTextEncoderAdapter(HFTextAdapter):
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

            trust = trust_remote_code  # the grant; the entry can only ask (prh.models.trust)
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
        layers, _ = self._pooled_hidden_states(ids, batch_size, pool, progress)
        return FeatureResult(
            layers=layers, layer_names=hidden_state_names(len(layers)), meta={"caption_index": caption_index}
        )
