"""The KV cache of the AR loop: one cache, two regimes chosen by a small policy.

Capacity ``window`` frames; the first ``sink`` frames of the video are never evicted. When a
new block does not fit, the oldest non-sink frames leave (into the history pool, in the
retrieval regime) and the rest shift left. A block's forwards all write the block's own
slots; eviction happens once, when the block starts.

native    : keys stored after RoPE at absolute frame positions; attention context =
            sink + every other cached frame.
retrieval : keys stored before RoPE; each forward re-applies RoPE at positions relative to
            the cache (slot index), retrieved frames at position 0; attention context =
            [sink ‖ retrieved ‖ local] with local = the last (window − sink − K) slots.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .attention import attention
from .rope import apply_rope, rope_table


@dataclass(frozen=True)
class CachePolicy:
    window: int = 12          # L: cache capacity in frames
    sink: int = 1             # S: first frames kept forever
    top_k: int = 0            # K: retrieved frames per block (0 = plain sliding window)
    relative_rope: bool = False

    @classmethod
    def native(cls, window: int = 12, sink: int = 1) -> "CachePolicy":
        return cls(window, sink, 0, False)

    @classmethod
    def retrieval(cls, window: int = 12, sink: int = 1, top_k: int = 6) -> "CachePolicy":
        return cls(window, sink, top_k, True)

    @property
    def local_frames(self) -> int:
        """The window budget: frames of the cache (current block included) attended besides sink and retrieved."""
        return self.window - self.sink - self.top_k

    def check(self, frames_per_block: int) -> None:
        if self.sink < 0 or self.top_k < 0 or frames_per_block < 1:
            raise ValueError(f"sink ({self.sink}), top_k ({self.top_k}) and frames per block "
                             f"({frames_per_block}) must be ≥ 0, ≥ 0 and ≥ 1")
        if self.local_frames < frames_per_block:
            raise ValueError(
                f"local attention window {self.window} leaves {self.local_frames} local frames after sink "
                f"{self.sink} and top_k {self.top_k}, fewer than the {frames_per_block} frames of a "
                f"block; use a window (local_attn_size) ≥ {self.sink + self.top_k + frames_per_block}")


class KVCache:
    """Per-layer K/V [B, window·tokens, heads, head_dim] plus the frame bookkeeping shared by all layers."""

    def __init__(self, policy: CachePolicy, num_layers: int, batch: int, grid_hw: tuple[int, int],
                 heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 on_evict: Callable[[int, list[torch.Tensor], list[torch.Tensor]], None] | None = None):
        """``on_evict(global_frame, k_per_layer, v_per_layer)`` receives each frame leaving the window
        (views of the cache, valid only during the call)."""
        self.policy = policy
        self.grid_hw = grid_hw
        self.tokens = grid_hw[0] * grid_hw[1]
        self.head_dim = head_dim
        self.on_evict = on_evict
        self.oldest = policy.sink  # global index of the oldest non-sink frame in the cache
        shape = (batch, policy.window * self.tokens, heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.filled = 0            # frames in the cache
        self.block_start = -1      # global index of the current block's first frame
        self.block_slot = 0        # its first slot
        self.block_frames = 0
        self._q_table = None
        self._ctx_table = None
        self._ctx_slots: list[tuple[int, int]] = []
        self._retrieved: tuple[torch.Tensor, torch.Tensor] | None = None

    # ------------------------------------------------------------------ block set-up
    def begin_block(self, start_frame: int, num_frames: int) -> None:
        """Make room for frames [start_frame, start_frame + num_frames). A repeated call for the
        same block (denoising steps, context pass) keeps the slots."""
        if start_frame == self.block_start:
            return
        p, t = self.policy, self.tokens
        overflow = self.filled + num_frames - p.window
        if overflow > 0:
            lo, hi = p.sink * t, (p.sink + overflow) * t
            if self.on_evict is not None:
                for f in range(overflow):
                    a, b = lo + f * t, lo + (f + 1) * t
                    self.on_evict(self.oldest + f, [k[:, a:b] for k in self.k], [v[:, a:b] for v in self.v])
            self.oldest += overflow
            end = self.filled * t
            for buf in (*self.k, *self.v):
                buf[:, lo:end - (hi - lo)] = buf[:, hi:end].clone()
            self.filled -= overflow
        self.block_start, self.block_slot, self.block_frames = start_frame, self.filled, num_frames
        self.filled += num_frames
        self._retrieved = None
        self._prepare_positions()

    def _prepare_positions(self) -> None:
        p = self.policy
        h, w = self.grid_hw
        dev = self.k[0].device
        block = torch.arange(self.block_frames, device=dev)
        sink_end = min(p.sink, self.filled)
        local_start = max(p.sink, self.filled - p.local_frames)
        self._ctx_slots = [(0, sink_end), (local_start, self.filled)]
        if p.relative_rope:
            self._q_table = rope_table(block + self.block_slot, h, w, self.head_dim)
            slots = torch.cat([torch.arange(a, b, device=dev) for a, b in self._ctx_slots])
            self._ctx_table = rope_table(slots, h, w, self.head_dim)
        else:
            self._q_table = rope_table(block + self.block_start, h, w, self.head_dim)

    def set_retrieved(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Retrieved frames' pre-RoPE K and V [layers, B, n·tokens, heads, d] for the current block.
        Their RoPE (temporal position 0) is applied once here and reused by every forward."""
        n = k.shape[2] // self.tokens
        h, w = self.grid_hw
        table = rope_table(torch.zeros(n, dtype=torch.long, device=k.device), h, w, self.head_dim)
        self._retrieved = (torch.stack([apply_rope(kl, table) for kl in k]), v)

    # ------------------------------------------------------------------ per-layer attention
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Write this block's K/V into its slots, then attend over the policy's context."""
        t = self.tokens
        a, b = self.block_slot * t, (self.block_slot + self.block_frames) * t
        rel = self.policy.relative_rope
        self.k[layer][:, a:b] = k if rel else apply_rope(k, self._q_table)
        self.v[layer][:, a:b] = v
        ks = [self.k[layer][:, s * t:e * t] for s, e in self._ctx_slots]
        vs = [self.v[layer][:, s * t:e * t] for s, e in self._ctx_slots]
        if rel:
            roped = apply_rope(torch.cat(ks, 1), self._ctx_table)
            ks = [roped[:, : ks[0].shape[1]], roped[:, ks[0].shape[1]:]]
        if self._retrieved is not None:
            ks.insert(1, self._retrieved[0][layer])
            vs.insert(1, self._retrieved[1][layer])
        return attention(apply_rope(q, self._q_table), torch.cat(ks, 1), torch.cat(vs, 1))
