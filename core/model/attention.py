"""The one attention function every layer calls (swap it here to change kernels)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Softmax attention without mask. q [B, Lq, heads, d], k/v [B, Lk, heads, d] → [B, Lq, heads, d].

    Goes through torch's scaled_dot_product_attention so CUDA gets its fused kernels.
    """
    out = _sdpa(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


def attention_heads_first(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                          bias: torch.Tensor | None = None) -> torch.Tensor:
    """``attention`` with k/v already [B, heads, Lk, d] (e.g. the prompt's, laid out once) and an optional
    additive logit bias broadcastable to [B, heads, Lq, Lk] → [B, Lq, heads, d]."""
    return _sdpa(q.transpose(1, 2), k, v, bias).transpose(1, 2)


def _sdpa(q, k, v, bias=None):
    """torch's fused attention; on the meta device (a dry run, core/files/memory_trace.py), where torch would
    decompose it into the full logit matrix, the fused kernel's own outputs: what a GPU kernel allocates."""
    if q.is_meta:
        return torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(q, k, v, attn_mask=bias)[0]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
