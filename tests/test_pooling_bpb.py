"""Pooling and bits-per-byte against hand computations."""

from __future__ import annotations

import math

import pytest
import torch

from prh.errors import InputError
from prh.models.bpb import LOG2_E, bits_per_byte, sequence_bpb, token_nll, utf8_bytes
from prh.models.pooling import last_index, last_token, masked_mean, pool_any, pool_tokens, spatial_mean


def _batch(lengths, t=6, d=5, seed=0, left=False):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(len(lengths), t, d, generator=g)
    mask = torch.zeros(len(lengths), t, dtype=torch.long)
    for i, n in enumerate(lengths):
        if left:
            mask[i, t - n :] = 1
        else:
            mask[i, :n] = 1
    return h, mask


@pytest.mark.parametrize("left", [False, True])
def test_masked_mean_and_last_token_match_loops(left):
    h, mask = _batch([6, 2, 1, 4], left=left)
    mean = masked_mean(h, mask)
    last = last_token(h, mask)
    for i in range(h.shape[0]):
        rows = [h[i, t] for t in range(h.shape[1]) if mask[i, t] == 1]
        assert torch.allclose(mean[i], sum(rows) / len(rows), atol=1e-6)
        assert torch.equal(last[i], rows[-1])


def test_padding_values_never_leak():
    h, mask = _batch([3, 1])
    h[mask == 0] = float("nan")
    assert torch.isfinite(masked_mean(h, mask)).all()
    assert torch.isfinite(last_token(h, mask)).all()


def test_last_index_and_pool_dispatch():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]])
    assert last_index(mask).tolist() == [1, 3, 0]
    x = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).reshape(2, 3, 2, 2)
    assert torch.equal(pool_any(x, "mean"), torch.tensor([[1.5, 5.5, 9.5], [13.5, 17.5, 21.5]]))
    assert torch.equal(spatial_mean(x), pool_any(x, "cls"))  # 4-D maps are always averaged
    tokens = torch.randn(2, 4, 3)
    assert torch.equal(pool_tokens(tokens, "cls"), tokens[:, 0])
    assert torch.allclose(pool_tokens(tokens, "mean"), tokens.mean(1))
    with pytest.raises(InputError):
        pool_tokens(tokens, "max")
    with pytest.raises(InputError, match="no real tokens"):
        masked_mean(tokens, torch.zeros(2, 4))


def test_token_nll_matches_hand_log_softmax():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 4, 7, generator=g)
    ids = torch.randint(0, 7, (2, 4), generator=g)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    nll = token_nll(logits, ids, mask)
    assert nll.shape == (2, 3)
    for b in range(2):
        for t in range(3):
            counted = mask[b, t] == 1 and mask[b, t + 1] == 1
            logp = logits[b, t] - torch.logsumexp(logits[b, t], dim=0)
            want = -logp[ids[b, t + 1]] if counted else torch.tensor(0.0)
            assert math.isclose(float(nll[b, t]), float(want), abs_tol=1e-5)


def test_bits_per_byte_definition():
    texts = ["ab", "é✓"]  # 2 bytes; 2 + 3 = 5 bytes
    assert utf8_bytes(texts).tolist() == [2.0, 5.0]
    nats = torch.tensor([math.log(2) * 2, math.log(2) * 10])  # 2 bits and 10 bits
    assert torch.allclose(bits_per_byte(nats, texts), torch.tensor([1.0, 2.0]))
    assert math.isclose(LOG2_E, 1 / math.log(2))
    with pytest.raises(InputError, match="empty"):
        utf8_bytes(["x", ""])


def test_bpb_padding_side_independent_and_equals_reference_definition():
    """Right-padded (ours) and left-padded (the reference's, with mask[:, :-1]) give the same bpb."""
    g = torch.Generator().manual_seed(2)
    lengths, t, v = [4, 2, 3], 4, 9
    texts = ["abcd", "xy", "pqr"]
    seqs = [torch.randint(0, v, (n,), generator=g) for n in lengths]
    per_tok = [torch.randn(n, v, generator=g) for n in lengths]
    right_ids = torch.zeros(3, t, dtype=torch.long)
    right_logits = torch.zeros(3, t, v)
    right_mask = torch.zeros(3, t, dtype=torch.long)
    left_ids, left_logits, left_mask = right_ids.clone(), right_logits.clone(), right_mask.clone()
    for i, n in enumerate(lengths):
        right_ids[i, :n], right_logits[i, :n], right_mask[i, :n] = seqs[i], per_tok[i], 1
        left_ids[i, t - n :], left_logits[i, t - n :], left_mask[i, t - n :] = seqs[i], per_tok[i], 1
    ours = sequence_bpb(right_logits, right_ids, right_mask, texts)
    # the reference's formula: CE * attention_mask[:, :-1] on left padding, summed, * log2(e) / bytes
    ce = torch.nn.functional.cross_entropy(
        left_logits[:, :-1].transpose(1, 2), left_ids[:, 1:], reduction="none"
    )
    ref = (ce * left_mask[:, :-1]).sum(1) * LOG2_E / torch.tensor([4.0, 2.0, 3.0])
    assert torch.allclose(ours, ref, atol=1e-5)
    assert torch.allclose(sequence_bpb(left_logits, left_ids, left_mask, texts), ref, atol=1e-5)
