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

Attention always reads one contiguous K and one V tensor (no per-forward concatenation). In the
native regime that is the window itself: sink and every other cached frame are one run of slots
whose keys are already rotated. Otherwise each layer keeps a context buffer [sink | retrieved |
local] of rotated keys and values. Only the current block's slots change between the forwards of
a block, so everything before them is rotated and copied once per block and layer (at the layer's
first forward); a forward rotates and writes just the block's own keys, at its queries' positions.
Memory: ``context="per-layer"`` keeps one such buffer per layer (window frames of K and V each: the retrieval
regime then holds twice the window's K/V). ``context="shared"`` keeps ONE buffer that every layer refills at its
forward (the part before the block rotated and copied again; bit-identical results, a little more work per
forward) plus each layer's retrieved frames (rotated once when retrieved): the cost is the window's K/V, one
layer's context and the retrieved frames. ``context="auto"`` keeps one per layer when the device has ample room
for them, else shares one. The run's memory estimate (core/sampling/budget.py) counts one per layer, the default.
The native regime keeps no copy either way.

Storage (``kv``, core/context/kv_store.py): "exact" keeps the window's K/V in the compute dtype; "fp8" keeps
them, and the shared context's retrieved frames, as float8-e4m3 with a float32 scale per token and head (about
half of bf16). Attention still reads one contiguous K/V in the compute dtype: the part before the block is
de-quantised into the context buffer(s) (the native regime, which otherwise reads the window itself, gets one
shared scratch of the window's size), the block's own K/V are attended as computed, and stored quantised. With
per-layer buffers the retrieved frames go through the same fp8 round trip, so ``context`` never changes results.
Frames handed to ``on_evict`` are de-quantised (the pool's own kv-fp8 encoding of them gives the same bytes).

What happens when a block does not fit, where the block's queries sit in RoPE time and how a slot run
is rotated are the ``strategy``'s hooks (core/context/strategies/base.py); the default is the sliding window
above. ∞-RoPE, MemRoPE and Deep Forcing are other strategies over this same cache.

Shots (LongLive 2.0): ``rope_offset`` is added to the temporal position of the current block's queries
and keys (cached keys keep theirs). ``pin`` marks the current block as a shot sink (native regime): it
slides with the window until it sits right behind the sink, then it is kept like the sink (the
evictions take the frames after it) until the next ``pin`` replaces it. ``clear_to_sink`` drops everything
between the sink and the current block (a clean re-cache at a cut).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..files.memory import device_available
from ..files.memory_trace import label
from ..model.attention import attention
from ..model.rope import apply_rope, compute_dtype, rope_table
from .kv_store import CONTEXT_BUFFERS, KV_STORAGES, SlotStore, check_kv, heads_first, round_trip
from .policy import CachePolicy
from .strategies.base import Strategy

__all__ = ["CONTEXT_BUFFERS", "KV_STORAGES", "CachePolicy", "KVCache"]

_ROOM = 4          # auto: one buffer per layer when the device has this many times their extra bytes free


class KVCache:
    """Per-layer K/V [B, window·tokens, heads, head_dim] plus the frame bookkeeping shared by all layers."""

    def __init__(self, policy: CachePolicy, num_layers: int, batch: int, grid_hw: tuple[int, int],
                 heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 on_evict: Callable[[int, list[torch.Tensor], list[torch.Tensor]], None] | None = None,
                 strategy: Strategy | None = None, context: str = "per-layer", kv: str = "exact"):
        """``on_evict(global_frame, k_per_layer, v_per_layer)`` receives each frame leaving the window
        (in the compute dtype; views of the cache, valid only during the call). ``strategy``: the long-context
        strategy's hooks (one object per run; default the sliding window). ``context``: "per-layer" or "shared" context buffers
        (see the module's docstring), or "auto": per layer when the device has room for them, decided when they
        are first needed (after the weights and the cache are in place). ``kv``: "exact" (the compute ``dtype``)
        or "fp8" storage of the window's K/V and the retrieved frames (see the module's docstring)."""
        if context not in CONTEXT_BUFFERS:
            raise ValueError(f"context buffers {context!r} are not one of {', '.join(CONTEXT_BUFFERS)}")
        check_kv(kv)
        self.kv, self.dtype = kv, dtype
        self.context_mode = context
        self.shared_context = context == "shared"
        self.policy = policy
        self.strategy = strategy if strategy is not None else Strategy()
        self._observe = self.strategy.observe if self.strategy.observes_queries else None
        self.grid_hw = grid_hw
        self.tokens = grid_hw[0] * grid_hw[1]
        self.head_dim = head_dim
        self.on_evict = on_evict
        self.oldest = policy.sink  # global index of the oldest non-sink frame in the cache
        shape = (batch, policy.window * self.tokens, heads, head_dim)
        self.keys, self.values = (SlotStore(kv, num_layers, shape, dtype, device) for _ in range(2))
        self.k, self.v = self.keys.data, self.values.data     # per layer: compute dtype (exact) or float8 (fp8)
        self._scales = self.keys.scale + self.values.scale   # fp8: float32 per token and head (else empty)
        label("kv cache", *self.k, *self.v, *self._scales)
        self.filled = 0            # frames in the cache
        self.block_start = -1      # global index of the current block's first frame
        self.block_slot = 0        # its first slot
        self.block_frames = 0
        self.query_base = 0        # RoPE time of the block's first query frame
        self._q_table = None       # rotations of the block's queries (and its own keys), compute dtype
        self._tables: dict[tuple[int, int], torch.Tensor] = {}
        self._sink = self._local = (0, 0)   # attended slot ranges [a, b)
        self._retrieved = 0        # frames retrieved for the current block
        self._ctx_k: list[torch.Tensor] = []   # context buffers (one per layer, or one shared), allocated on first use
        self._ctx_v: list[torch.Tensor] = []
        self._ret: tuple[SlotStore, SlotStore] | None = None   # shared context: each layer's retrieved K (rotated), V
        self._ret_k: list[torch.Tensor] = []   # their data (and fp8 scales) as lists, what the cache holds
        self._ret_v: list[torch.Tensor] = []
        self._ret_scales: list[torch.Tensor] = []
        self._stale = [True] * num_layers      # context part before the block not yet filled this block
        self._holder = -1                      # shared context: the layer whose context the buffer holds
        self.rope_offset = 0.0     # added to the current block's temporal positions (shots)
        self.pinned: tuple[int, int] | None = None   # (first slot, frames) of the shot sink

    # ------------------------------------------------------------------ block set-up
    def begin_block(self, start_frame: int, num_frames: int) -> None:
        """Make room for frames [start_frame, start_frame + num_frames). A repeated call for the
        same block (denoising steps, context pass) keeps the slots."""
        if start_frame == self.block_start:
            return
        overflow = self.filled + num_frames - self.policy.window
        if overflow > 0:
            self.strategy.evict(self, overflow)
        self.block_start, self.block_slot, self.block_frames = start_frame, self.filled, num_frames
        self.filled += num_frames
        self._retrieved = 0
        self._prepare_positions()

    def _kept(self) -> int:
        """Frames at the front never evicted: the sink, plus the shot sink once it sits right behind it."""
        sink = self.policy.sink
        return sink + self.pinned[1] if self.pinned is not None and self.pinned[0] == sink else sink

    def pin(self, frames: int) -> None:
        """Make the current block's first ``frames`` frames the shot sink (replacing any earlier one)."""
        if self.on_evict is not None or self.policy.relative_rope:
            raise ValueError("a shot sink pins frames of the native sliding window; it cannot be used with retrieval")
        self.pinned = (self.block_slot, min(frames, self.block_frames))

    def clear_to_sink(self) -> None:
        """Forget every frame between the sink and the current block, and the shot sink: the block's slots move to
        right behind the sink, where the pass that follows writes its K/V (LongLive 2.0's ``shot_clean_recache``,
        before a new shot's first block is cached and pinned; native regime)."""
        if self.on_evict is not None or self.policy.relative_rope:
            raise ValueError("a clean re-cache at a cut clears the native sliding window; it cannot be used with "
                             "retrieval or a relative-RoPE strategy")
        sink = self.policy.sink
        self.oldest, self.block_slot, self.filled = self.block_start, sink, sink + self.block_frames
        self.pinned = None
        self._prepare_positions()

    def evict_oldest(self, overflow: int) -> None:
        """Hand the ``overflow`` oldest frames after the kept ones (sink, shot sink) to on_evict, shift the rest
        left over them."""
        t, kept = self.tokens, self._kept()
        lo = kept * t
        if self.on_evict is not None:
            for f in range(overflow):
                a, b = lo + f * t, lo + (f + 1) * t
                self.on_evict(self.oldest + f, *([s.read(i, a, b) for i in range(len(s.data))]
                                                 for s in (self.keys, self.values)))
        self.oldest += overflow
        self.shift_out(kept, overflow)
        if self.pinned is not None and self.pinned[0] >= kept:    # a shot sink not yet behind the sink slides
            self.pinned = (self.pinned[0] - overflow, self.pinned[1])

    def shift_out(self, first_slot: int, overflow: int) -> None:
        """Drop slots [first_slot, first_slot + overflow): the slots after them shift left over them."""
        t = self.tokens
        lo, step, end = first_slot * t, overflow * t, self.filled * t
        for buf in self.slot_buffers():
            # chunks of ``step`` tokens, oldest first: a chunk's source starts where its destination
            # ends, so nothing is overwritten before it is read (no temporary copy of the window)
            for a in range(lo, end - step, step):
                n = min(step, end - step - a)
                buf[:, a:a + n] = buf[:, a + step:a + step + n]
        self.filled -= overflow

    def _prepare_positions(self) -> None:
        p = self.policy
        self._sink = (0, min(p.sink, self.filled))
        # while the sink is still filling (sink > frames so far) there is no local part: the sink holds them all
        self._local = (min(max(p.sink, self.filled - p.local_frames), self.filled), self.filled)
        base = self.query_base = self.strategy.query_position(self)   # RoPE time of the block's first frame
        positions = torch.arange(base, base + self.block_frames)
        if self.rope_offset:
            positions = positions.to(torch.float64) + self.rope_offset
        self._q_table = self._table(positions)
        self._tables: dict[tuple[int, int], torch.Tensor] = {}   # slot range → rotations, kept for the block
        self._stale = [True] * len(self.k)

    def _table(self, frame_positions: torch.Tensor) -> torch.Tensor:
        dev, h, w = self.k[0].device, *self.grid_hw
        table = rope_table(frame_positions.to(dev), h, w, self.head_dim)
        return table.to(compute_dtype(self.dtype))

    def slot_rotations(self, a: int, b: int) -> torch.Tensor:
        """Rotations of slots [a, b), each at its index (kept for the block: every layer reads them)."""
        if (a, b) not in self._tables:
            self._tables[a, b] = self._table(torch.arange(a, b))
        return self._tables[a, b]

    def set_retrieved(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Retrieved frames' pre-RoPE K and V [layers, B, n·tokens, heads, d] for the current block.
        Their RoPE (temporal position 0) is applied once here, straight into every layer's context
        (shared context: into each layer's retrieved frames, exact or fp8)."""
        n = k.shape[2] // self.tokens
        frames = self._sink[1] + n + self._local[1] - self._local[0]
        if frames > self.policy.window:
            raise ValueError(f"{n} retrieved frames do not fit the attention context: sink, retrieved and "
                             f"local frames make {frames} > window {self.policy.window}; retrieve at most "
                             f"top_k = {self.policy.top_k} frames")
        self._retrieved = n
        self._allocate_context()
        table = self._table(torch.zeros(n, dtype=torch.long))
        a, b = self._sink[1] * self.tokens, (self._sink[1] + n) * self.tokens
        for layer in range(len(self.k)):
            if self.shared_context:
                self._ret[0].write(layer, 0, b - a, apply_rope(k[layer], table))
                self._ret[1].write(layer, 0, b - a, v[layer])
            else:
                apply_rope(k[layer], table, out=self._ctx_k[layer][:, a:b])
                self._ctx_v[layer][:, a:b] = v[layer]
                if self.kv != "exact":    # what the shared context's fp8 store would read back
                    round_trip(self._ctx_k[layer][:, a:b])
                    round_trip(self._ctx_v[layer][:, a:b])
        self._stale = [True] * len(self.k)
        self._holder = -1

    def _allocate_context(self) -> None:
        if self._ctx_k:
            return
        if not self.policy.relative_rope and self.kv != "exact":   # one scratch the window is de-quantised into
            self.shared_context = True
        elif self.context_mode == "auto":
            self.shared_context = not self._room_per_layer()
        b, n, h, d = self.k[0].shape
        dev, layers = self.k[0].device, 1 if self.shared_context else len(self.k)
        self._ctx_k = [heads_first((b, n, h, d), self.dtype, dev) for _ in range(layers)]
        self._ctx_v = [heads_first((b, n, h, d), self.dtype, dev) for _ in range(layers)]
        if self.shared_context and self.policy.top_k:
            shape = (b, self.policy.top_k * self.tokens, h, d)
            self._ret = tuple(SlotStore(self.kv, len(self.k), shape, self.dtype, dev) for _ in range(2))
            self._ret_k, self._ret_v = self._ret[0].data, self._ret[1].data
            self._ret_scales = self._ret[0].scale + self._ret[1].scale
        label("context", *self._ctx_k, *self._ctx_v, *self._ret_k, *self._ret_v, *self._ret_scales)

    def _room_per_layer(self) -> bool:
        """Whether the device has room for one context buffer per layer (``_ROOM`` × what they cost beyond one)."""
        k = self.k[0]
        extra = 2 * (len(self.k) - 1) * k.numel() * self.dtype.itemsize
        free = device_available(k.device)
        return free is None or free >= _ROOM * extra

    # ------------------------------------------------------------------ per-layer attention
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Write this block's K/V into its slots, then attend over the policy's context."""
        self.write(layer, k, v)
        t, n = self.tokens, k.shape[1]
        if self.kv == "exact" and not self.policy.relative_rope and not self._retrieved \
                and self._sink[1] == self._local[0]:
            ks, vs = self.k[layer][:, :self.filled * t], self.v[layer][:, :self.filled * t]
        else:
            ks, vs = self._context(layer)
            # the block's keys sit at its queries' positions in both regimes (attended as computed, not stored)
            if self.policy.relative_rope or self.kv != "exact":
                apply_rope(k, self._q_table, out=ks[:, -n:])
            else:
                ks[:, -n:] = self.k[layer][:, self.block_slot * t:self.filled * t]
            vs[:, -n:] = v
        q = apply_rope(q, self._q_table)
        if self._observe is not None:
            self._observe(self, layer, q)
        return attention(q, ks, vs)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """Write this block's K/V into its slots (K rotated in the native regime, raw in the retrieval
        regime) without attending: a pass that only fills the cache calls this alone."""
        t = self.tokens
        a, b = self.block_slot * t, (self.block_slot + self.block_frames) * t
        if self.policy.relative_rope:
            self.keys.write(layer, a, b, k)
        elif self.kv == "exact":
            apply_rope(k, self._q_table, out=self.k[layer][:, a:b])
        else:
            self.keys.write(layer, a, b, apply_rope(k, self._q_table))
        self.values.write(layer, a, b, v)

    def slot_buffers(self, layer: int | None = None) -> list[torch.Tensor]:
        """Every tensor holding ``layer``'s K/V tokens (all layers' when None), token axis 1: moving, gathering
        or copying tokens in each moves the cached K/V unchanged, whatever the storage (what the strategies use)."""
        return self.keys.buffers(layer) + self.values.buffers(layer)

    def _context(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """This layer's [sink | retrieved | local] K (rotated) and V, views of its context buffers; the
        part before the current block is filled at the layer's first forward of the block."""
        (s0, s1), (l0, l1), t = self._sink, self._local, self.tokens
        self._allocate_context()
        n = (s1 - s0 + self._retrieved + l1 - l0) * t
        buf = 0 if self.shared_context else layer
        ks, vs = self._ctx_k[buf][:, :n], self._ctx_v[buf][:, :n]
        if self._stale[layer] or (self.shared_context and self._holder != layer):
            self._stale[layer] = False
            self._holder = layer
            local_at = (s1 - s0 + self._retrieved) * t
            for dst, (a, b) in ((0, (s0, s1)), (local_at, (l0, self.block_slot))):
                if b > a:
                    self._fill(layer, dst, a, b)
            if self.shared_context and self._retrieved:
                r = self._retrieved * t
                self._ret[0].read_into(layer, 0, r, ks[:, (s1 - s0) * t:local_at])
                self._ret[1].read_into(layer, 0, r, vs[:, (s1 - s0) * t:local_at])
        return ks, vs

    def _fill(self, layer: int, dst: int, a: int, b: int) -> None:
        """Copy slots [a, b) to the context at token ``dst``, keys rotated at their slot positions (retrieval
        regime; native keys are stored rotated)."""
        t, buf = self.tokens, 0 if self.shared_context else layer
        out = self._ctx_k[buf][:, dst:dst + (b - a) * t]
        if self.policy.relative_rope and self.kv == "exact":
            apply_rope(self.k[layer][:, a * t:b * t], self.strategy.slot_table(self, layer, a, b), out=out)
        elif self.policy.relative_rope:
            apply_rope(self.keys.read_into(layer, a * t, b * t, out), self.strategy.slot_table(self, layer, a, b),
                       out=out)
        else:
            self.keys.read_into(layer, a * t, b * t, out)
        self.values.read_into(layer, a * t, b * t, self._ctx_v[buf][:, dst:dst + (b - a) * t])
