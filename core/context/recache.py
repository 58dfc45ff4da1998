"""LongLive's KV re-cache at a prompt switch: the cached window re-encoded under the new prompt.

At a switch firing at block start b the cache holds n = min(window, b) frames (slot j = its j-th
frame). ONE forward of the model over their clean latents (each block's final x0), at timestep
``context_noise``, with the new prompt, rewrites their K/V; its output is discarded and it draws no
noise. Reproduces NVlabs/LongLive 1.0 (``_recache_after_switch``, commit 2462895) in the native regime.

Slots rewritten (both regimes). ``global_sink`` and b > window: slots sink…n−1; the sink slots keep
their K/V (and are attended, see below). Otherwise (``global_sink`` false, or a switch at b ≤ window,
where LongLive also rewrites the sink even with ``global_sink``): slots 0…n−1.

Attention of the forward: no mask. Every re-encoded query attends [kept sink slots ‖ every
re-encoded key] and nothing else (LongLive builds a block-causal mask that its cache path never
reads; retrieved frames are not attended).

native    : slot j is re-encoded from frame b − n + j at RoPE position b − n + j (absolute); K stored
            after RoPE. With ``global_sink`` false the frames b − n … b − n + sink − 1 become the sink.
retrieval : slot j is re-encoded from the frame it holds: frame j for a sink slot (the sink stays
            frames 0…sink−1, so pool entry i stays frame sink + i), else frame b − n + j; RoPE position
            j, the slot, as every forward of this regime positions the cache; K stored before RoPE
            and kept sink keys rotated at their slots. The history pool keeps what it holds: frames
            already evicted keep the K/V they were generated with; a re-cached frame carries its new
            K/V into the pool when it is evicted later.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..model.attention import attention
from .kv_cache import KVCache
from ..model.backbone import BackboneModel, TextContext, compute_place
from ..model.rope import apply_rope, compute_dtype, rope_table


@dataclass(frozen=True)
class RecachePlan:
    """Slots ``first_slot``… are rewritten from ``frames`` (global indices, slot order) at RoPE time
    ``positions``; slots 0…first_slot−1 are kept and attended."""
    block_start: int
    first_slot: int
    frames: tuple[int, ...]
    positions: tuple[int, ...]

    def record(self) -> dict:
        return {"frames": list(self.frames), "slots": list(range(self.first_slot, self.first_slot + len(self.frames))),
                "kept_slots": list(range(self.first_slot)), "rope_positions": list(self.positions)}


def plan_recache(cache: KVCache, block_start: int, global_sink: bool) -> RecachePlan:
    """Which slots a re-cache before ``block_start`` rewrites, from which frames, at which positions."""
    p, n = cache.policy, cache.filled
    keep = min(p.sink, n) if global_sink and block_start > n else 0
    slots = range(keep, n)
    if p.relative_rope:
        frames = tuple(j if j < p.sink else block_start - n + j for j in slots)
        positions = tuple(slots)
    else:
        frames = positions = tuple(block_start - n + j for j in slots)
    return RecachePlan(block_start, keep, frames, positions)


class _RecacheContext:
    """The AttentionContext of the re-cache forward: rotates the re-encoded frames at the plan's
    positions, attends [kept sink ‖ re-encoded], writes the re-encoded K/V into their slots."""

    def __init__(self, cache: KVCache, plan: RecachePlan):
        self.cache, self.plan = cache, plan
        dev, cdt = cache.k[0].device, compute_dtype(cache.dtype)
        grid = (*cache.grid_hw, cache.head_dim)
        self.table = rope_table(torch.tensor(plan.positions, device=dev), *grid).to(cdt)
        self.kept_table = rope_table(torch.arange(max(plan.first_slot, 1), device=dev), *grid).to(cdt)

    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        rotated = self.write(layer, k, v)
        keep = self.plan.first_slot * self.cache.tokens
        if keep:
            kept_k, kept_v = (s.read(layer, 0, keep) for s in (self.cache.keys, self.cache.values))
            if self.cache.policy.relative_rope:
                kept_k = apply_rope(kept_k, self.kept_table[:keep])
            rotated, v = torch.cat([kept_k, rotated], 1), torch.cat([kept_v, v], 1)
        return attention(apply_rope(q, self.table), rotated, v)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """Store the re-encoded K (rotated: native; raw: retrieval) and V; returns K rotated."""
        t = self.cache.tokens
        a, b = self.plan.first_slot * t, (self.plan.first_slot + len(self.plan.frames)) * t
        rotated = apply_rope(k, self.table)
        self.cache.keys.write(layer, a, b, k if self.cache.policy.relative_rope else rotated)
        self.cache.values.write(layer, a, b, v)
        return rotated


@torch.no_grad()
def recache(model: BackboneModel, cache: KVCache, text: TextContext, latents: torch.Tensor, block_start: int,
            global_sink: bool, timestep: float) -> RecachePlan:
    """Re-encode the cached window under ``text`` before the block at ``block_start``.

    latents [B, T, C, H, W]: the video so far (clean x0, model space; frames < block_start are read).
    ``model``: the backbone interface (core/model/backbone.py): its parameters' device and dtype, and one
    ``write_cache`` through the re-cache's own attention context. Returns the plan that was carried out (which frames went into which slots).
    """
    plan = plan_recache(cache, block_start, global_sink)
    if not plan.frames:
        return plan
    device, dtype = compute_place(model)
    x = latents[:, list(plan.frames)].to(device=device, dtype=dtype)      # [B, n, C, H, W]
    t = torch.full(x.shape[:2], float(timestep), device=device, dtype=torch.float32)
    model.write_cache(x.permute(0, 2, 1, 3, 4), t, text, _RecacheContext(cache, plan))
    return plan
