"""Text batching shared by the language adapters: tokenize once, sort by length, pad each batch to its own longest
sequence (right padding) and write the pooled rows back in dataset order -- one loop, :func:`run_text_batches`,
used by every text path (:class:`HFTextAdapter` for the Hugging Face encoders and causal LMs, the ONNX text
path) -- and the hub/zoo source resolution of Hugging Face models."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import torch

from prh.errors import InputError
from prh.models.base import Adapter
from prh.models.batching import LayerBuffer, Progress, batches, call_progress
from prh.models.guards import forward_guard
from prh.models.pooling import pool_tokens
from prh.models.spec import ModelSpec

#: ``forward(chunk, input_ids, attention_mask) -> pooled layers``: one padded batch in, L tensors (B, D_l) out.
BatchForward = Callable[[list[int], torch.Tensor, torch.Tensor], list[torch.Tensor]]
#: ``hook(chunk, input_ids, attention_mask, output)``: sees every batch's model output (e.g. to compute bpb).
OutputHook = Callable[[list[int], torch.Tensor, torch.Tensor, Any], None]


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


def run_text_batches(
    ids: list[list[int]], pad_id: int, batch_size: int, forward: BatchForward, progress: Progress = None
) -> list[torch.Tensor]:
    """The one text batching loop: length-sorted batches, right-padded to their own longest sequence.

    Parameters
    ----------
    ids : list of list of int
        Token ids of the N texts (:func:`tokenize`).
    pad_id : int
        Padding token id (masked out; it never reaches the features).
    batch_size : int
        Texts per batch; batches hold texts of similar length, the longest first (:func:`length_order`).
    forward : callable
        ``forward(chunk, input_ids, attention_mask)`` with ``chunk`` the B dataset indices of the batch and the
        padded (B, T) long tensors (on the CPU); returns the L pooled layers, each (B, D_l).
    progress : callable or tqdm-like, optional
        Called with the number of texts finished after each batch.

    Returns
    -------
    list of torch.Tensor
        L tensors of shape (N, D_l), float32, CPU, rows in dataset order whatever the batching.
    """
    buf = LayerBuffer(len(ids))
    for chunk in batches(length_order(ids), batch_size):
        input_ids, mask = pad_batch([ids[i] for i in chunk], pad_id)
        buf.put(chunk, forward(chunk, input_ids, mask))
        call_progress(progress, len(chunk))
    return buf.result()


def hidden_state_names(n_layers: int) -> list[str]:
    """``["embed", "layer.0", ..., "layer.{L-2}"]`` for the L hidden states of a Hugging Face text model."""
    return ["embed"] + [f"layer.{i}" for i in range(n_layers - 1)]


class HFTextAdapter(Adapter):
    """Base of the Hugging Face text adapters: every hidden state, pooled over the attention mask, through
    :func:`run_text_batches`.

    Subclasses set ``self.model``, ``self.tokenizer``, ``self.pad_id`` (besides the :class:`Adapter` fields)
    and may add keyword arguments of the forward call in :attr:`forward_kwargs`.
    """

    model: Any
    tokenizer: Any
    pad_id: int
    #: Extra keyword arguments of every forward call (the causal LM turns the KV cache off).
    forward_kwargs: ClassVar[dict[str, Any]] = {}

    def _pooled_hidden_states(
        self,
        ids: list[list[int]],
        batch_size: int,
        pool: str,
        progress: Progress,
        hook: OutputHook | None = None,
    ) -> tuple[list[torch.Tensor], int]:
        """Run the model over the tokenized texts and pool every hidden state.

        Parameters
        ----------
        ids : list of list of int
            Token ids of the N texts.
        batch_size, pool, progress
            As in :meth:`Adapter.extract`.
        hook : callable, optional
            ``hook(chunk, input_ids, attention_mask, output)`` called after each forward pass, inside the
            out-of-memory guard, with the inputs on the model's device (the causal LM computes bits per byte
            here from the same forward pass).

        Returns
        -------
        (list of torch.Tensor, int)
            The L+1 pooled hidden states, each (N, D), in dataset order; the number of real (unpadded) tokens.
        """
        n_tokens = 0

        def forward(chunk: list[int], input_ids: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
            nonlocal n_tokens
            input_ids, mask = input_ids.to(self.device), mask.to(self.device)
            with forward_guard(self.spec, batch_size):
                out = self.model(
                    input_ids=input_ids, attention_mask=mask, output_hidden_states=True, **self.forward_kwargs
                )
                pooled = [pool_tokens(h, pool, mask) for h in out.hidden_states]
                if hook is not None:
                    hook(chunk, input_ids, mask, out)
            n_tokens += int(mask.sum())
            return pooled

        layers = run_text_batches(ids, self.pad_id, batch_size, forward, progress)
        return layers, n_tokens


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
    :func:`prh.models.guards.loading` so that hub and file errors become clear :class:`ModelLoadError` messages.

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
