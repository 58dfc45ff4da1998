"""Classifier-free guidance over a second KV cache (LongLive 2.0's ``guidance_scale`` ≠ 1).

A guided run conditions every model call twice: on the prompt, over the run's cache, and on the negative prompt,
over a cache of its own (the reference's ``kv_cache_neg``). The negative cache has the same policy and its own
instance of the strategy, starts the same blocks, evicts the same frames, takes the same RoPE offsets, pins the
same shot sinks, is flushed, re-cached or cleared at the same switches and cuts, and its context pass writes the
block's clean K/V as computed under the negative prompt. The flows are mixed before the sampler sees them:
``uncond + scale · (cond − uncond)`` (the reference's order of operations), so the solver steps with the mixed flow
and a block's x0 comes from it. It holds no history pool: guidance is refused with retrieval (SamplingConfig).
Cost: a second window of K/V (and context buffers) on the device, two forwards per step and per context pass.
"""
from __future__ import annotations

import torch

from ..context.kv_cache import KVCache
from ..context.recache import recache
from ..files.memory_trace import label
from ..model.backbone import BackboneModel, TextContext


class NegativeBranch:
    """The negative prompt's side of a guided run: its text K/V, its own cache and the mixing of the flows."""

    def __init__(self, model: BackboneModel, negative: torch.Tensor, batch: int, cache: KVCache, scale: float):
        """``negative`` [1 or B, L, text_dim] in the compute dtype on the device; ``cache`` a fresh cache like the
        run's (no pool)."""
        self.model, self.cache, self.scale = model, cache, scale
        self.text: TextContext = model.encode_text(negative.expand(batch, -1, -1))
        label("text", *(t for kv in self.text.kv for t in kv))

    def mix(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """x [B, C, F, H, W] at t [B, F], ``cond`` the prompt's flow on them → the guided flow (same layout)."""
        uncond = self.model(x, t, self.text, self.cache)
        return uncond + self.scale * (cond - uncond)

    def context_pass(self, x: torch.Tensor, t: torch.Tensor) -> None:
        """The block's clean K/V under the negative prompt into its cache (a full forward when the strategy reads
        the block's queries, as for the prompt's cache)."""
        if self.cache.strategy.observes_queries:
            self.model(x, t, self.text, self.cache)
        else:
            self.model.write_cache(x, t, self.text, self.cache)

    def switch(self, mode: str, cut: bool, rope_offset: float, output: torch.Tensor, start: int, global_sink: bool,
               context_noise: float) -> None:
        """What a prompt switch did to the prompt's cache, done to this one (the negative prompt stays)."""
        self.cache.rope_offset = rope_offset
        if mode == "recache":
            recache(self.model, self.cache, self.text, output, start, global_sink, context_noise)
        elif mode == "flush":
            self.cache.strategy.flush(self.cache, cut)
