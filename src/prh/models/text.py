"""Text batching shared by the language adapters: tokenize once, sort by length, pad each batch to its own longest
sequence (right padding), and the hub/zoo source resolution of Hugging Face models."""

from __future__ import annotations

from pathlib import Path

import torch

from prh.errors import InputError
from prh.models.spec import ModelSpec


def ensure_pad_token(tokenizer) -> int:
    """Give a tokenizer without a pad token the EOS token as pad (the usual fallback); return the pad id.

    The pad id never influences features: padded positions are masked and excluded from pooling.
    """
    if getattr(tokenizer, "pad_token_id", None) is None:
        eos = getattr(tokenizer, "eos_token", None)
        if eos is not None:
            tokenizer.pad_token = eos
    tokenizer.padding_side = "right"
    pad = getattr(tokenizer, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def tokenize(tokenizer, texts: list[str], max_length: int | None = None) -> list[list[int]]:
    """Token ids of every text (special tokens as the tokenizer adds them), optionally truncated."""
    enc = tokenizer(
        list(texts), add_special_tokens=True, truncation=max_length is not None, max_length=max_length
    )
    ids = [list(map(int, x)) for x in enc["input_ids"]]
    empty = [i for i, x in enumerate(ids) if len(x) == 0]
    if empty:
        raise InputError(f"texts at positions {empty[:5]} produce no tokens (empty captions?); remove them.")
    return ids


def length_order(ids: list[list[int]]) -> list[int]:
    """Dataset indices sorted by decreasing token count (stable), so batches hold similar lengths and the
    longest batch comes first (an out-of-memory error shows up at once)."""
    return sorted(range(len(ids)), key=lambda i: -len(ids[i]))


def pad_batch(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad token lists to the batch's longest: returns input_ids (B, T) long and attention_mask (B, T) long."""
    t = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), t), dtype=torch.long)
    for row, s in enumerate(seqs):
        ids[row, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[row, : len(s)] = 1
    return ids, mask


def hf_source(spec: ModelSpec) -> tuple[str, dict]:
    """Where to load a Hugging Face model from: (path or hub id, extra from_pretrained kwargs).

    ``zoo:<name>`` goes through :func:`prh.zoo.locate`; a ``.gguf`` file (zoo or local) becomes its folder plus
    ``gguf_file=<file name>``; ``options["gguf_file"]`` is passed on for hub repositories holding GGUF files.
    """
    kwargs: dict = {}
    source = spec.source
    if spec.zoo_name is not None:
        from prh.zoo import locate

        source = str(locate(spec.zoo_name))
    path = Path(source).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        kwargs["gguf_file"] = path.name
        source = str(path.parent)
    elif spec.options.get("gguf_file"):
        kwargs["gguf_file"] = spec.options["gguf_file"]
    if spec.revision and not path.exists():
        kwargs["revision"] = spec.revision
    return source, kwargs


def dtype_kwarg(dtype: torch.dtype) -> dict:
    """``from_pretrained`` dtype keyword for the installed transformers (``dtype`` since 4.56, else ``torch_dtype``)."""
    import transformers
    from packaging.version import Version

    key = "dtype" if Version(transformers.__version__.split("+")[0]) >= Version("4.56") else "torch_dtype"
    return {key: dtype}


def load_text_model(
    spec: ModelSpec, auto_model, dtype: torch.dtype, device_map: str | None, trust_remote_code: bool
):
    """Tokenizer and model of a Hugging Face text model: hub id, local folder, ``zoo:`` entry or GGUF file.

    ``auto_model`` is the transformers class to load with (``AutoModel``, ``AutoModelForCausalLM``). The weights
    come in ``dtype``; ``device_map`` (if given) is passed to ``from_pretrained``. Call it inside
    :func:`prh.models.base.loading` so that hub and file errors become clear :class:`ModelLoadError` messages.

    Returns ``(model, tokenizer, gguf)`` where ``gguf`` says whether the weights came from a GGUF file.
    """
    from transformers import AutoTokenizer

    source, kwargs = hf_source(spec)
    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code, **kwargs)
    load_kw = dict(kwargs, trust_remote_code=trust_remote_code, **dtype_kwarg(dtype))
    if device_map is not None:
        load_kw["device_map"] = device_map
    model = auto_model.from_pretrained(source, **load_kw)
    return model, tokenizer, "gguf_file" in kwargs
