"""What a long-context strategy is to the cache: a small object whose hooks the one KV cache calls.

The cache (core/context/kv_cache.py) owns the K/V buffers, the slots and the attention context. A strategy
decides the few things the strategies of the field disagree on:

  evict           a block does not fit: which frames leave and what stays in their place
                  (sliding window: the oldest after the sink; MemRoPE folds them into memory tokens;
                  Deep Forcing keeps the history tokens recent queries attend to most)
  query_position  the RoPE time of the block's first frame (its own keys sit there too)
  slot_table      the rotations of a run of slots when the context is filled (once per block and layer)
  observe         the block's rotated queries, per layer (only if ``observes_queries``)
  flush           what a prompt switch does to the cache (∞-RoPE's KV flush), when the switch mode asks

``Strategy`` itself is the sliding window of native and rag: its hooks are exactly what the cache did
before strategies existed, so those two regimes stay byte-identical and keep their fast paths. A run
gets a fresh strategy object (its state lives for one video); the frozen settings live in
``SamplingConfig`` (core/sampling/config.py) and the registry (core/context/strategies/registry.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import torch

# ``cache`` below is a core.context.kv_cache.KVCache (not imported: the cache imports this module)


class Strategy:
    """The sliding window (native, rag): evict the oldest frames after the sink, queries at their slot
    (relative regime) or at their frame index (native regime)."""

    observes_queries = False      # True: the cache calls ``observe`` at every attention call

    def evict(self, cache: "KVCache", overflow: int) -> None:
        cache.evict_oldest(overflow)

    def query_position(self, cache: "KVCache") -> int:
        return cache.block_slot if cache.policy.relative_rope else cache.block_start

    def slot_table(self, cache: "KVCache", layer: int, a: int, b: int) -> torch.Tensor:
        """Rotations of slots [a, b) (relative regime): each slot at its index."""
        return cache.slot_rotations(a, b)

    def observe(self, cache: "KVCache", layer: int, q_rotated: torch.Tensor) -> None:
        """The block's queries [B, F·tokens, heads, d] after RoPE (called only if ``observes_queries``)."""

    def flush(self, cache: "KVCache", cut: bool) -> dict:
        raise NotImplementedError(f"{type(self).__name__} defines no KV flush at a prompt switch")


@dataclass(frozen=True)
class StrategyDefaults:
    """A strategy's defaults on one family: window, sink, options that differ from ``StrategySpec.params``, and
    what was scaled from the published numbers (empty when nothing was)."""
    window: int
    sink: int
    options: Mapping[str, float] = field(default_factory=dict)
    scaled: str = ""
