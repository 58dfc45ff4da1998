"""Deep Forcing (arXiv 2512.05081) as a cache strategy — per the paper; no reference code.

The paper (Yi et al., KAIST, "Training-Free Long Video Generation with Deep Sink and Participative
Compression") builds on Self-Forcing; its code was not public within reach when this was written, so
this follows the paper's text and the choices below are ours where the paper gives no number.

Deep Sink   a large sink, about half of the window (the paper: 40–60 %; sink sizes of 10–15 frames
            helped, 18 over-preserved), whose keys' temporal RoPE phase is re-aligned to the current
            timeline: the sink sits just before the rest of the cache instead of at the video's start.
            Keys are stored before RoPE and rotated from the stored values at every block, at temporal
            positions = slot index: the sink's last frame is one frame before the first tail slot, the
            distance from the queries to the sink stays constant for the whole video, and no rotation is
            ever applied to a rotated key (the shift is applied once, never accumulated).
Participative Compression
            when a block does not fit, the history between the sink and the ``recent_frames`` newest
            frames is compressed to exactly C = ``compressed_frames`` × tokens-per-frame tokens: the C
            tokens with the largest attention score Σ q·k, summed over the recent queries (the last
            block's queries from its clean context pass, after RoPE) and the heads, per layer and per
            batch element, token-wise (a frame may keep some of its tokens). The cache is re-aligned as
            [sink | top-C | recent], the kept tokens in their original order; then the new block.
            Positions after it: a kept token keeps its spatial (h, w) position and takes the temporal
            position of the slot it lands in.
Runs at the first forward of every block that does not fit (every block once the window is full).
Memory: window frames of K/V per layer, constant in the video's length, plus the last block's queries.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ...model.rope import apply_rope
from .base import Strategy, StrategyDefaults


@dataclass(frozen=True)
class DeepForcingParams:
    recent_frames: int = 3         # kept verbatim before the new block; the last block's queries score
    compressed_frames: int = 5     # C = this × tokens per frame history tokens kept


def participation(queries: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
    """Σ over query tokens and heads of q·k: queries [B, m, heads, d], keys [B, n, heads, d] → [B, n], in float32
    at least (a half-precision sum over thousands of tokens would blur the ranking)."""
    dtype = torch.promote_types(keys.dtype, torch.float32)
    return torch.einsum("bhd,bnhd->bn", queries.to(dtype).sum(dim=1), keys.to(dtype))


def top_tokens(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Indices [B, count] of the ``count`` largest scores per row, in ascending (original) order."""
    return torch.topk(scores, count, dim=1).indices.sort(dim=1).values


class DeepForcing(Strategy):
    observes_queries = True

    def __init__(self, params: DeepForcingParams):
        self.params = params
        self._queries: dict[int, torch.Tensor] = {}    # layer → the last forward's rotated queries
        self.spatial: dict[int, torch.Tensor] = {}     # layer → [B, C] in-frame token index of each kept token
        self.kept_frames: dict[int, torch.Tensor] = {}  # layer → [B, C] global frame of each kept token
        self.compressions: list[dict] = []

    def observe(self, cache, layer: int, q_rotated: torch.Tensor) -> None:
        self._queries[layer] = q_rotated

    def slot_table(self, cache, layer: int, a: int, b: int) -> torch.Tensor:
        s, c = cache.policy.sink, self.params.compressed_frames
        if layer not in self.spatial or b <= s or a >= s + c:
            return cache.slot_rotations(a, b)
        if a != s:
            raise RuntimeError(f"deep-forcing: slot range [{a}, {b}) starts inside the compressed tokens [{s}, {s + c})")
        kept = self._kept_table(cache, layer)
        if b == s + c:
            return kept
        rest = cache.slot_rotations(s + c, b)
        return torch.cat([kept, rest.unsqueeze(0).expand(kept.shape[0], *rest.shape)], dim=1)

    def _kept_table(self, cache, layer: int) -> torch.Tensor:
        """[B, C, 1, d/2]: kept token i at the temporal position of its slot, its own spatial position."""
        s, c, t = cache.policy.sink, self.params.compressed_frames, cache.tokens
        base = cache.slot_rotations(s, s + c)                                   # [C, 1, d/2]
        rows = torch.arange(c * t, device=base.device) // t * t
        return base[rows + self.spatial[layer].to(base.device)]

    def evict(self, cache, overflow: int) -> None:
        s, t, r, c = cache.policy.sink, cache.tokens, self.params.recent_frames, self.params.compressed_frames
        start = cache.block_start + cache.block_frames
        end = cache.filled - r                       # candidates: slots [s, end)
        compressed = bool(self.spatial)
        frames, spatial = self._slot_tokens(cache, s + c if compressed else s, end, start)
        for layer in range(len(cache.k)):
            f, sp = frames, spatial
            if compressed:                           # the tokens kept last time come first
                f, sp = torch.cat([self.kept_frames[layer], f], 1), torch.cat([self.spatial[layer], sp], 1)
            keys = apply_rope(cache.keys.read(layer, s * t, end * t), self.slot_table(cache, layer, s, end))
            keep = top_tokens(participation(self._queries[layer], keys), c * t)
            for buf in cache.slot_buffers(layer):    # K and V (fp8: their bytes and scales)
                src = buf[:, s * t:end * t]
                buf[:, s * t:(s + c) * t] = src.gather(1, keep[:, :, None, None].expand(-1, -1, *src.shape[2:]))
            self.spatial[layer], self.kept_frames[layer] = sp.gather(1, keep), f.gather(1, keep)
        for buf in cache.slot_buffers():
            buf[:, (s + c) * t:(s + c + r) * t] = buf[:, end * t:cache.filled * t].clone()
        self.compressions.append({"block_start": start, "candidate_slots": [s, end], "kept_tokens": c * t,
                                  "recent_frames": list(range(start - r, start))})
        cache.filled = s + c + r

    @staticmethod
    def _slot_tokens(cache, a: int, b: int, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Global frame and in-frame index [B, n] of every token of slots [a, b), which hold consecutive whole
        frames ending where the block at ``start`` begins."""
        t, batch, dev = cache.tokens, cache.k[0].shape[0], cache.k[0].device
        slots = torch.arange(a, b, device=dev).repeat_interleave(t)
        frames = start - (cache.filled - slots)
        spatial = torch.arange(t, device=dev).repeat(b - a)
        return frames.expand(batch, -1), spatial.expand(batch, -1)


def check(policy, frames_per_block: int, params: DeepForcingParams) -> None:
    """sink + C + recent + the current block must fit the window."""
    r, c = params.recent_frames, params.compressed_frames
    if r < 0 or c < 0:
        raise ValueError(f"deep-forcing recent_frames {r} and compressed_frames {c} must be ≥ 0")
    need = policy.sink + c + r + frames_per_block
    if policy.window < need:
        raise ValueError(
            f"deep-forcing's cache holds sink {policy.sink} + compressed history {c} frames' worth of tokens + "
            f"recent {r} + the current block of {frames_per_block} = {need} frames, but the window is "
            f"{policy.window}; use a window (local_attn_size) ≥ {need}, or a smaller sink "
            f"(the paper: about half the window)")


def scale(spec, frames_per_block: int):
    """Published (ours, from the paper): window 21 = 7 blocks of 3, recent 3 = 1 block, C = 5 frames' tokens and a
    sink of 10 — what remains, about half the window. On other blocks: window 7 blocks, recent 1 block, C scaled by
    the block size (rounded, ≥ 1) and the sink what remains, so the tiers fill the window as published."""
    base = DeepForcingParams()
    k = frames_per_block / 3
    window, recent = 7 * frames_per_block, frames_per_block
    compressed = max(1, round(base.compressed_frames * k))
    sink = window - compressed - recent - frames_per_block
    return StrategyDefaults(window, sink, {"recent_frames": recent, "compressed_frames": compressed},
                            scaled=f"window {window} = 7 blocks, recent_frames {recent} = 1 block, compressed_frames "
                                   f"{compressed} and sink {sink} scaled by blocks of {frames_per_block} (published: "
                                   f"{spec.window}, {base.recent_frames}, {base.compressed_frames}, {spec.sink} at "
                                   "blocks of 3)")

