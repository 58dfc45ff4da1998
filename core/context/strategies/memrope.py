"""MemRoPE (YoungRaeKimm/MemRoPE, commit b89bf5b; arXiv 2603.12513) as a cache strategy.

Cache of ``window`` frames (12 in the published configs) = [sink 3 | long 1 | short 1 | recent | current
block], K stored before RoPE and rotated at every forward with temporal position = slot index (this
cache's relative regime, no retrieval); every forward attends the whole cache. Memory stays constant
for any video length: frames that leave are folded into two memory tokens instead of kept.

Fold, at the first forward of every block that does not fit (the cache is full from block 4 on at the
published sizes): the ``overflow`` frames right after the memory slots leave (the oldest recent
frames: global frames s−7…s−5 for a block starting at s), the rest shifts left. Their mean m over all
their tokens, per batch, head and channel, is folded into the memory slots, K and V alike:
first fold: long = short = m (frames 3 and 4, which sat in the memory slots until then, are dropped
unfolded); later: long ← α_long·m + (1 − α_long)·long, short ← α_short·m + (1 − α_short)·short
(α 0.01 and 0.1). Each memory slot is one frame's worth of tokens holding its one vector repeated.
The published Self-Forcing and LongLive (+ LoRA) configs share this policy; ``use_block_rope`` and
``recent_size`` of those configs are stored there but never read.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Strategy, StrategyDefaults

MEMORY_FRAMES = 2      # long, short


@dataclass(frozen=True)
class MemRopeParams:
    alpha_long: float = 0.01
    alpha_short: float = 0.1


class MemRope(Strategy):
    def __init__(self, params: MemRopeParams):
        self.params = params
        self.folds: list[dict] = []      # per fold: block start, global frames folded

    def evict(self, cache, overflow: int) -> None:
        s, t = cache.policy.sink, cache.tokens
        first = s + MEMORY_FRAMES
        lo, hi = first * t, (first + overflow) * t
        for store in (cache.keys, cache.values):
            for layer in range(len(store.data)):
                self._fold(store, layer, store.read(layer, lo, hi).mean(dim=1, keepdim=True), s * t, t)
        # slots first… hold consecutive frames that end where the new block starts
        start = cache.block_start + cache.block_frames
        oldest = start - (cache.filled - first)
        self.folds.append({"block_start": start, "frames": list(range(oldest, oldest + overflow))})
        cache.shift_out(first, overflow)

    def _fold(self, store, layer: int, m, long_at: int, t: int) -> None:
        """Memory slots of ``store``'s ``layer`` (K or V, core/context/kv_store.py; long at token ``long_at``, short
        after it) ← fold of m [B, 1, heads, d]."""
        if not self.folds:
            new_long = new_short = m
        else:
            a, b = self.params.alpha_long, self.params.alpha_short
            new_long = a * m + (1 - a) * store.read(layer, long_at, long_at + 1)
            new_short = b * m + (1 - b) * store.read(layer, long_at + t, long_at + t + 1)
        shape = (m.shape[0], t, *m.shape[2:])
        store.write(layer, long_at, long_at + t, new_long.expand(shape))
        store.write(layer, long_at + t, long_at + 2 * t, new_short.expand(shape))


def check(policy, frames_per_block: int, params: MemRopeParams) -> None:
    """sink + long + short + the frames a block evicts must fit the window."""
    need = policy.sink + MEMORY_FRAMES + frames_per_block
    if policy.window < need:
        raise ValueError(
            f"memrope's cache holds sink {policy.sink} + memory {MEMORY_FRAMES} (long, short) + recent frames + "
            f"the current block of {frames_per_block}: at least {need} frames, but the window is {policy.window}; "
            f"use a window (local_attn_size) ≥ {need} (published: 12 = sink 3 | memory 2 | recent 4 | current 3) "
            f"or a smaller sink")
    for name in ("alpha_long", "alpha_short"):
        a = getattr(params, name)
        if not 0 < a <= 1:
            raise ValueError(f"memrope {name} {a} must be in (0, 1] (published: long 0.01, short 0.1)")


def scale(spec, frames_per_block: int):
    """Published: sink 3 = 1 block and a window of 12 = 4 blocks of 3 (the 2 memory slots are frames, not blocks).
    On other blocks: sink 1 block, window 4 blocks."""
    window, sink = 4 * frames_per_block, frames_per_block
    return StrategyDefaults(window, sink, scaled=f"window {window} = 4 blocks of {frames_per_block} and sink {sink} = "
                                                 f"1 block (published: {spec.window} and {spec.sink} at blocks of 3)")

