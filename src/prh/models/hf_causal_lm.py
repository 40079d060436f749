"""Hugging Face causal language models (GPT-2, Llama, BLOOM, Gemma, ... and GGUF files): every hidden state,
mean or last-token pooling, and bits per byte from the same forward pass."""

from __future__ import annotations

import torch

from prh._optional import install_hint
from prh.models.adapters import Requirement, register_adapter
from prh.models.base import count_params
from prh.models.batching import Progress
from prh.models.bpb import bits_per_byte, token_nll
from prh.models.device import resolve_device, resolve_dtype
from prh.models.guards import loading
from prh.models.result import FeatureResult
from prh.models.spec import ModelSpec
from prh.models.text import HFTextAdapter, ensure_pad_token, hidden_state_names, load_text_model, tokenize


def _gguf_weights(spec: ModelSpec) -> bool:
    """Whether the weights come as a GGUF file (``options.gguf``, ``options.gguf_file`` or a ``.gguf`` source)."""
    return bool(spec.options.get("gguf") or spec.options.get("gguf_file") or spec.source.endswith(".gguf"))


@register_adapter(
    "hf-causal-lm",
    pools=("mean", "last"),
    modality="language",
    requires=(
        Requirement(
            "gguf", ("gguf", "accelerate"), hint=install_hint("zoo", "gguf, accelerate"), when=_gguf_weights
        ),
    ),
)
class HFCausalLMAdapter(HFTextAdapter):
    """Run a causal LM over captions: L+1 hidden states (embedding output + every block), pooled, plus bpb.

    Batches are formed after sorting the texts by token count and padded (on the right) only to their own longest
    text; causal attention means real tokens never see padding, positions start at 0 for every text, and the pooled
    rows are written back at their dataset indices — features do not depend on batch size or composition.

    Parameters
    ----------
    spec : ModelSpec
        ``options`` may hold ``gguf_file``, ``max_length`` (truncate longer texts), ``caption_index``.
    device, dtype : str
        ``"auto"`` device = CUDA when available; dtype name (``float32`` default, ``bfloat16``, ``float16``, ``auto``).
    device_map : str or None
        Passed to ``from_pretrained`` (``"auto"`` spreads a model bigger than one GPU over all GPUs / CPU; needs
        ``accelerate``). Inputs then go to the embedding's device.
    trust_remote_code : bool
        Allow the repository's own code (False unless the user turns it on; the spec's flag also counts).
    model, tokenizer : optional
        An already-built model and tokenizer (tests, notebooks); nothing is loaded then.
    """

    forward_kwargs = {"use_cache": False}

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
        self.gguf = False
        if model is None:
            model, tokenizer = self._load(device_map, trust_remote_code)
        elif device_map is None:
            model = model.to(self.device, self.dtype)
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pad_id = ensure_pad_token(tokenizer)
        self.n_params = count_params(self.model)
        if device_map is not None:
            self.device = self.model.get_input_embeddings().weight.device

    def _load(self, device_map: str | None, trust_remote_code: bool):
        from transformers import AutoModelForCausalLM

        with loading(self.spec):
            model, tokenizer, self.gguf = load_text_model(
                self.spec, AutoModelForCausalLM, self.dtype, device_map, trust_remote_code
            )
            if device_map is None:
                model = model.to(self.device)
        return model, tokenizer

    @torch.inference_mode()
    def _extract(self, dataset, batch_size: int, pool: str, progress: Progress) -> FeatureResult:
        caption_index = int(self.spec.options.get("caption_index", 0))
        texts = dataset.texts(caption_index)
        ids = tokenize(self.tokenizer, texts, self.spec.options.get("max_length"))
        if self.spec.options.get("max_length"):  # bytes of what the model actually saw
            texts = [
                self.tokenizer.decode(x, skip_special_tokens=True) or t
                for x, t in zip(ids, texts, strict=True)
            ]
        bpb = torch.zeros(len(texts), dtype=torch.float32)

        def add_bpb(chunk: list[int], input_ids: torch.Tensor, mask: torch.Tensor, out) -> None:
            nll = token_nll(out.logits, input_ids, mask).sum(dim=1)
            bpb[torch.tensor(chunk)] = bits_per_byte(nll, [texts[i] for i in chunk])

        layers, n_tokens = self._pooled_hidden_states(ids, batch_size, pool, progress, hook=add_bpb)
        meta = {
            "caption_index": caption_index,
            "n_tokens": n_tokens,
            "gguf": self.gguf,
        }
        if self.gguf:
            meta["note"] = (
                "GGUF weights are de-quantised: the quantisation error is part of the features and bpb."
            )
        return FeatureResult(
            layers=layers, layer_names=hidden_state_names(len(layers)), per_sample={"bpb": bpb}, meta=meta
        )
