"""K/V of frames recomputed from their clean latents alone: the ``latent`` storage of the history pool (an
approximation: each frame attends only to itself)."""
from __future__ import annotations

import torch

from ..model.attention import attention
from ..model.backbone import BackboneModel, TextContext, compute_place
from ..model.rope import apply_rope, rope_table


class _CaptureKV:
    """Attention context for recomputing K/V of isolated frames: each frame attends to itself at
    temporal position 0; the pre-RoPE K and V of every layer are kept."""

    def __init__(self, grid_hw: tuple[int, int], head_dim: int, device: torch.device):
        self.table = rope_table(torch.zeros(1, dtype=torch.long, device=device), *grid_hw, head_dim)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []

    def attend(self, layer, q, k, v):
        self.k.append(k)
        self.v.append(v)
        return attention(apply_rope(q, self.table), apply_rope(k, self.table), v)


def recompute_kv(model: BackboneModel, text: TextContext, latents: torch.Tensor, t: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """K/V of frames from their clean latents alone (the ``latent`` pool storage; an approximation).

    latents [B, n, C, H, W] → (k, v) [layers, B, n·tokens, heads, d], K before RoPE.
    """
    b, n, c, h, w = latents.shape
    device, dtype = compute_place(model)
    x = latents.to(device=device, dtype=dtype).reshape(b * n, c, 1, h, w)
    rep = text.repeat_batch(n)
    p = model.cfg.patch_size
    ctx = _CaptureKV((h // p[1], w // p[2]), model.cfg.head_dim, device)
    model(x, torch.full((b * n, 1), float(t), device=device), rep, ctx)
    k = torch.stack(ctx.k).reshape(len(ctx.k), b, n * ctx.k[0].shape[1], *ctx.k[0].shape[2:])
    v = torch.stack(ctx.v).reshape(len(ctx.v), b, n * ctx.v[0].shape[1], *ctx.v[0].shape[2:])
    return k, v
