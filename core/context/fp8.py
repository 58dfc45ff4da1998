"""K/V in float8-e4m3 with float32 scales: the one encoding of the KV cache's ``kv="fp8"`` and the history pool's
``kv-fp8`` (core/retrieval/pool.py).

A value x is stored as x8 = fp8(x / s), s = amax(|x|) over ``dims`` / 448 (the largest finite e4m3), and read back
as x8 · s. One scale per token and head (``dims`` = head_dim): a token of small keys is as precise as any other.
Rounding moves a value by at most 2^-4 of it (3 mantissa bits), plus 2^-10 · s below 2^-6 · s (subnormals).
Decoding a stored value, encoding it again gives the same bytes (the cache hands the pool decoded values).
"""
from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = 448.0     # the largest finite float8-e4m3fn


def quantise(x: torch.Tensor, dims: tuple[int, ...] = (-1,)) -> tuple[torch.Tensor, torch.Tensor]:
    """x (any float dtype) → (x8 float8-e4m3fn of x's shape, scale float32 with size-1 ``dims``)."""
    s = x.abs().amax(dim=dims, keepdim=True).float().clamp_min(1e-12) / FP8_MAX
    return (x.float() / s).to(FP8), s


def quantise_into(x: torch.Tensor, x8: torch.Tensor, scale: torch.Tensor) -> None:
    """Store x [..., d] into x8 [..., d] (float8) and scale [..., 1] (float32), one scale per last-dim vector;
    x8 and scale may be slices of bigger buffers."""
    q, s = quantise(x)
    x8.copy_(q)
    scale.copy_(s)


def dequantise_into(x8: torch.Tensor, scale: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """out [..., d] (the compute dtype) ← x8 · scale, with no float32 copy of the values (the fp8 → compute dtype
    copy is exact; the product is rounded once, in float32, to ``out``'s dtype). Returns ``out``."""
    out.copy_(x8)
    return out.mul_(scale)


def dequantise(x8: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A new tensor x8 · scale in ``dtype``."""
    return dequantise_into(x8, scale, torch.empty(x8.shape, dtype=dtype, device=x8.device))
