"""The memory settings of a run: how the attention context, the KV cache and the weights use the device.

Each has ``auto`` (the default), which the planner (core/app/plan.py ``choose_memory``) resolves from the
device's free memory before the run, lossless choices first:

  ``context``     ``per-layer`` one context buffer per layer (the relative-RoPE strategies: rag, infinity-rope,
                  memrope, deep-forcing), or ``shared``: one buffer every layer refills (bit-identical, a little
                  more work per forward; core/context/kv_cache.py)
  ``block_swap``  how many transformer blocks keep their weights in host memory, streamed to the device ahead of
                  their use (bit-identical; costs the copies: core/model/block_swap.py)
  ``kv``          ``exact`` K/V in the compute dtype, or ``fp8``: the window's K/V and the retrieved frames as
                  float8-e4m3 with a scale per token and head (an approximation: about half the bytes)

The weights' own precision (``--weights``, Load Backbone's ``weights``) is chosen when the backbone is loaded.
"""
from __future__ import annotations

from dataclasses import dataclass

AUTO = "auto"
CONTEXTS = ("auto", "per-layer", "shared")
KVS = ("auto", "exact", "fp8")


@dataclass(frozen=True)
class MemorySettings:
    """``auto`` or a choice for each (see the module's docstring); ``block_swap``: ``auto`` or a number of blocks."""
    context: str = AUTO
    kv: str = AUTO
    block_swap: int | str = AUTO

    def __post_init__(self):
        if self.context not in CONTEXTS:
            raise ValueError(f"context buffers '{self.context}' is not one of {', '.join(CONTEXTS)}")
        if self.kv not in KVS:
            raise ValueError(f"KV cache '{self.kv}' is not one of {', '.join(KVS)}")
        swap = self.block_swap
        if swap != AUTO and (isinstance(swap, bool) or not isinstance(swap, int) or swap < 0):
            raise ValueError(f"block swap '{swap}' must be auto or a number of blocks ≥ 0")

    @property
    def resolved(self) -> bool:
        return AUTO not in (self.context, self.kv, self.block_swap)

    def describe(self) -> str:
        n = self.block_swap
        swap = "none" if n == 0 else f"{n} block" if n == 1 else f"{n} blocks"
        return f"context buffers {self.context}, KV cache {self.kv}, block swap {swap}"


EXACT = MemorySettings("per-layer", "exact", 0)     # what the published codes do
