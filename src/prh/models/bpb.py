"""Bits per byte of a causal language model on its input texts, from the logits of the feature forward pass.

Definition (as the reference implementation, platonic-rep ``utils.py``): for a sequence of n real tokens, the
per-token cross-entropy (in nats) of predicting tokens 2..n from their prefixes is summed, converted to bits
(× log2 e) and divided by the number of UTF-8 bytes of the text. The first token is not predicted (there is no
prefix); a tokenizer that adds a BOS token makes it the unpredicted one.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prh.errors import InputError

LOG2_E = math.log2(math.e)


def token_nll(logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per-token negative log-likelihood in nats, zero where the prediction does not count.

    Parameters
    ----------
    logits : torch.Tensor
        (B, T, V) next-token logits (position t predicts token t+1).
    input_ids : torch.Tensor
        (B, T) token ids.
    mask : torch.Tensor
        (B, T) attention mask (1 real, 0 padding); left or right padding.

    Returns
    -------
    torch.Tensor
        (B, T-1) float32: entry t is -log p(token t+1 | tokens ≤ t) when both positions are real, else 0.
    """
    if logits.ndim != 3 or input_ids.shape != logits.shape[:2] or mask.shape != input_ids.shape:
        raise InputError(
            f"logits must be (B, T, V) with input_ids and mask (B, T); got {tuple(logits.shape)}, "
            f"{tuple(input_ids.shape)}, {tuple(mask.shape)}"
        )
    m = mask.to(torch.bool)
    counted = m[:, :-1] & m[:, 1:]
    nll = F.cross_entropy(logits[:, :-1].float().transpose(1, 2), input_ids[:, 1:].long(), reduction="none")
    return torch.where(counted, nll, torch.zeros((), dtype=nll.dtype, device=nll.device))


def utf8_bytes(texts: list[str]) -> torch.Tensor:
    """Number of UTF-8 bytes of each text, float32 (N,); raises on an empty text."""
    counts = [len(t.encode("utf-8")) for t in texts]
    if any(c == 0 for c in counts):
        bad = [i for i, c in enumerate(counts) if c == 0][:5]
        raise InputError(f"texts {bad} are empty: bits per byte is undefined for them.")
    return torch.tensor(counts, dtype=torch.float32)


def bits_per_byte(nll_sum_nats: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """Convert summed per-sequence cross-entropy (nats, shape (B,)) to bits per UTF-8 byte of each text."""
    return nll_sum_nats.detach().float().cpu() * LOG2_E / utf8_bytes(texts)


def sequence_bpb(
    logits: torch.Tensor, input_ids: torch.Tensor, mask: torch.Tensor, texts: list[str]
) -> torch.Tensor:
    """Bits per byte of each of the B sequences of a batch: (B, T, V), (B, T), (B, T), B texts -> (B,)."""
    return bits_per_byte(token_nll(logits, input_ids, mask).sum(dim=1), texts)
