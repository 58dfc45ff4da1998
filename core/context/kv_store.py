"""Where the KV cache keeps its K and V (core/context/kv_cache.py): per-layer token slots, exact or in float8.

``kv="exact"``: K/V in the compute dtype, read as views (the reference behaviour, the default).
``kv="fp8"``: K/V as float8-e4m3 with one float32 scale per token and head (core/context/fp8.py, the history
pool's ``kv-fp8`` encoding): 1 + 4/head_dim bytes a value instead of 2 (bf16) or 4 (float32); a read
de-quantises into the compute dtype. Values move by at most 2^-4 of themselves (3 mantissa bits).

``cache_bytes`` states what the cache holds on its device for each choice (for the run's memory budget).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .fp8 import FP8, dequantise, dequantise_into, quantise, quantise_into
from .policy import CachePolicy

KV_STORAGES = ("exact", "fp8")                 # KVCache ``kv``
CONTEXT_BUFFERS = ("auto", "per-layer", "shared")   # KVCache ``context``: one context buffer per layer, or one for all
_SCALE_BYTES = 4                               # one float32 scale per token and head (fp8)


def heads_first(shape, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A zeroed [B, tokens, heads, d] tensor stored as [B, heads, tokens, d]: each head's keys are contiguous,
    the layout the attention kernel reads fastest (the cache is written a block at a time, read every forward)."""
    b, n, h, d = shape
    return torch.zeros((b, h, n, d), dtype=dtype, device=device).transpose(1, 2)


def check_kv(kv: str) -> None:
    if kv not in KV_STORAGES:
        raise ValueError(f"KV cache storage {kv!r} is not one of {', '.join(KV_STORAGES)}; "
                         f"use 'exact' (the compute dtype) or 'fp8' (about half the bytes of bf16)")


class SlotStore:
    """K or V of every layer: [B, tokens, heads, d] per layer, read and written a run of tokens [a, b) at a time.

    ``data``: per layer, the compute dtype (exact) or float8-e4m3 (fp8); ``scale``: per layer float32
    [B, tokens, heads, 1] (fp8 only, else empty). Everything a move of slots must move is ``buffers()``."""

    def __init__(self, kv: str, layers: int, shape, dtype: torch.dtype, device: torch.device):
        check_kv(kv)
        self.exact = kv == "exact"
        self.dtype = dtype              # the compute dtype: what reads return, what writes take
        self.data = [heads_first(shape, dtype if self.exact else FP8, device) for _ in range(layers)]
        self.scale = [] if self.exact else [heads_first((*shape[:3], 1), torch.float32, device)
                                            for _ in range(layers)]

    def read(self, layer: int, a: int, b: int) -> torch.Tensor:
        """Tokens [a, b) of ``layer`` in the compute dtype: a view (exact) or a new tensor (fp8)."""
        if self.exact:
            return self.data[layer][:, a:b]
        return dequantise(self.data[layer][:, a:b], self.scale[layer][:, a:b], self.dtype)

    def read_into(self, layer: int, a: int, b: int, out: torch.Tensor) -> torch.Tensor:
        """Tokens [a, b) of ``layer`` into ``out`` (the compute dtype, e.g. a slice of a context buffer)."""
        if self.exact:
            return out.copy_(self.data[layer][:, a:b])
        return dequantise_into(self.data[layer][:, a:b], self.scale[layer][:, a:b], out)

    def write(self, layer: int, a: int, b: int, x: torch.Tensor) -> None:
        """Tokens [a, b) of ``layer`` ← x [B, b − a, heads, d] (the compute dtype; broadcasts like a copy)."""
        if self.exact:
            self.data[layer][:, a:b] = x
        else:
            quantise_into(x, self.data[layer][:, a:b], self.scale[layer][:, a:b])

    def buffers(self, layer: int | None = None) -> list[torch.Tensor]:
        """The tensors holding ``layer``'s tokens (every layer's when None), token axis 1: a move, gather or copy
        of tokens applied to each of them moves the stored values unchanged (fp8 values as bytes)."""
        layers = range(len(self.data)) if layer is None else [layer]
        if self.exact:
            return [self.data[i] for i in layers]
        return [self.data[i].view(torch.uint8) for i in layers] + [self.scale[i] for i in layers]


def round_trip(x: torch.Tensor) -> torch.Tensor:
    """x ← what an fp8 store would read back for it (in place; x [..., d] in the compute dtype)."""
    return dequantise_into(*quantise(x), x)


def value_bytes(kv: str, head_dim: int, dtype: torch.dtype) -> float:
    """Bytes one cached value costs: the compute dtype's size (exact), or 1 + a 4-byte scale per head_dim (fp8)."""
    check_kv(kv)
    return dtype.itemsize if kv == "exact" else 1 + _SCALE_BYTES / head_dim


@dataclass(frozen=True)
class CacheBytes:
    """Device bytes of the attention cache, by what holds them."""
    window: int        # every layer's K/V of the window's frames (exact or fp8)
    context: int       # context buffers in the compute dtype (per layer or one; fp8 native: one scratch)
    retrieved: int     # shared context: every layer's retrieved frames (exact or fp8)

    @property
    def total(self) -> int:
        return self.window + self.context + self.retrieved


def cache_bytes(policy: CachePolicy, layers: int, batch: int, tokens: int, heads: int, head_dim: int,
                dtype: torch.dtype, kv: str = "exact", context: str = "per-layer") -> CacheBytes:
    """What a KVCache of this policy holds on its device, ``tokens`` per frame, K/V [B, tokens, heads, head_dim]
    in the compute ``dtype``: the window's K/V, the context buffers (allocated at the first forward that needs
    them: relative-RoPE regime, or fp8 in any regime) and the shared context's retrieved frames. ``context="auto"``
    counts one buffer per layer (the most it takes). Rotation tables and a strategy's own state are not counted."""
    if context not in CONTEXT_BUFFERS:
        raise ValueError(f"context buffers {context!r} are not one of {', '.join(CONTEXT_BUFFERS)}")
    values = 2 * batch * tokens * heads * head_dim      # K and V of one frame of one layer
    window = math.ceil(layers * policy.window * values * value_bytes(kv, head_dim, dtype))
    one_context = policy.window * values * dtype.itemsize
    shared = context == "shared" or not policy.relative_rope
    if not policy.relative_rope and kv == "exact":
        return CacheBytes(window, 0, 0)                  # attention reads the window itself
    retrieved = 0
    if shared and policy.relative_rope and policy.top_k:
        retrieved = math.ceil(layers * policy.top_k * values * value_bytes(kv, head_dim, dtype))
    return CacheBytes(window, one_context * (1 if shared else layers), retrieved)
