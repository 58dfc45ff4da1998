"""The one attention function (core/model/attention.py) equals plain softmax(q kᵀ / √d) v."""
import math

import torch

from core.model.attention import attention, attention_heads_first


def _naive(q, k, v, bias=None):   # [B, L, heads, d]
    logits = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
    if bias is not None:
        logits = logits + bias
    return torch.einsum("bhqk,bkhd->bqhd", logits.softmax(-1), v)


def _qkv(lq=5, lk=7, heads=2, d=8):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(2, lq, heads, d, generator=g), torch.randn(2, lk, heads, d, generator=g),
            torch.randn(2, lk, heads, d, generator=g))


def test_attention_equals_the_naive_softmax_attention():
    q, k, v = _qkv()
    out = attention(q, k, v)
    assert out.shape == q.shape
    torch.testing.assert_close(out, _naive(q, k, v), atol=1e-5, rtol=1e-5)


def test_heads_first_keys_with_a_bias_equal_the_naive_attention_with_that_bias():
    q, k, v = _qkv()
    bias = torch.randn(1, 2, 5, 7)
    out = attention_heads_first(q, k.transpose(1, 2), v.transpose(1, 2), bias)
    torch.testing.assert_close(out, _naive(q, k, v, bias), atol=1e-5, rtol=1e-5)
