"""Long-context strategies, each a cache policy over the one KV cache (core/context/kv_cache.py) and the one model.

``registry``      names → published defaults, trade-offs, references (``get_spec``, ``describe``, ``NAMES``)
``base``          the hooks the cache calls; ``Strategy`` itself is the sliding window (native, rag)
``infinity_rope`` ∞-RoPE: block-relativistic RoPE, KV flush and RoPE cut at prompt boundaries
``memrope``       MemRoPE: evicted frames folded into long/short EMA memory tokens
``deep_forcing``  Deep Forcing: deep sink + participative compression (per the paper; no reference code)
"""
from .registry import NAMES, SPECS, StrategySpec, describe, get_spec

__all__ = ["NAMES", "SPECS", "StrategySpec", "describe", "get_spec"]
