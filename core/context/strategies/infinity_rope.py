"""∞-RoPE (yesiltepe-hidir/infinity-rope, commit 63d7b84; arXiv 2511.20649) as a cache strategy.

Block-relativistic RoPE is this cache's relative regime without retrieval: keys stored before RoPE,
re-rotated at every forward with temporal positions 0…n−1 in slot order, the block's queries at
their slots (window − 3 … window − 1 once the window is full). The published config: window 6, sink 1.

What ∞-RoPE adds is its prompt boundary (the switch mode ``flush`` of a prompt schedule):

KV flush   every layer: slots sink, sink + 1 ← the buffer's last two slots, the cache holds sink + 2
           frames; the new prompt's cross-attention K/V are computed (the pipeline does that at every
           switch). Reference quirks kept: it copies the *buffer's* last two slots, not the two newest
           frames (before the window is full those slots are still zero and are attended as zero keys),
           and the sizes are hard-coded in the reference (slots 1–2, end at frame 3: sink 1); with a
           sink S this copies into slots S, S + 1. At window 6 with a full window the flush leaves exactly
           the cache an ordinary eviction would: a cross-attention-only switch.
RoPE cut   a switch into a prompt marked as a cut also moves the boundary block's queries and its own
           keys to temporal positions ``cut_position`` … (45, 46, 47 in the reference), for that block's
           forwards only; the cached keys keep 0…n−4. The reference marks a cut on the scene *before* the
           boundary (its README's ``a[10s] | b[10s#]`` is off by one); a schedule here marks the prompt
           the cut leads into.
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import Strategy, StrategyDefaults

FLUSH_KEEP = 2      # frames the reference's flush copies after the sink (hard-coded there)


@dataclass(frozen=True)
class InfinityRopeParams:
    cut_position: int = 45      # RoPE time of a cut block's first frame (``rope_cut``'s transition_from)


class InfinityRope(Strategy):
    def __init__(self, params: InfinityRopeParams):
        self.params = params
        self._cut_next = False      # the next block starts a hard cut

    def query_position(self, cache) -> int:
        if self._cut_next:
            self._cut_next = False
            return self.params.cut_position
        return cache.block_slot

    def flush(self, cache, cut: bool) -> dict:
        """Before the boundary block: the reference's KV flush (+ a RoPE cut of that block when ``cut``)."""
        s, w, t = cache.policy.sink, cache.policy.window, cache.tokens
        for buf in cache.slot_buffers():
            buf[:, s * t:(s + FLUSH_KEEP) * t] = buf[:, (w - FLUSH_KEEP) * t:w * t].clone()
        cache.filled = s + FLUSH_KEEP
        self._cut_next = cut
        return {"kind": "flush", "copied_slots": list(range(w - FLUSH_KEEP, w)),
                "into_slots": list(range(s, s + FLUSH_KEEP)), "cached_frames": cache.filled, "cut": cut,
                "cut_positions_from": self.params.cut_position if cut else None}


def check(policy, frames_per_block: int, params: InfinityRopeParams) -> None:
    """The flush keeps sink + 2 frames: the window must hold them."""
    if policy.window < policy.sink + FLUSH_KEEP:
        raise ValueError(f"infinity-rope's KV flush keeps sink {policy.sink} + {FLUSH_KEEP} frames, more than "
                         f"window {policy.window}; use a window (local_attn_size) ≥ {policy.sink + FLUSH_KEEP}")


def scale(spec, frames_per_block: int):
    """Published: a window of 6 frames = 2 blocks of 3 and a sink of 1 frame. On other blocks: 2 blocks (at least
    what the flush keeps: sink + 2), sink 1."""
    window = max(2 * frames_per_block, spec.sink + FLUSH_KEEP)
    return StrategyDefaults(window, spec.sink, scaled=f"window {window} = 2 blocks of {frames_per_block} (published: "
                                                     f"{spec.window} = 2 blocks of 3)")

