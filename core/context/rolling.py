"""Rolling Forcing's attention context: an anchor block, clean cached frames and a rolling window of noisy blocks.

The rolling block sampler (core/sampling/samplers/rolling.py) denoises several blocks in one model call, each
at its own noise level. This cache is what those calls attend (Rolling Forcing, TencentARC/RollingForcing
a1477d0, ``wan/modules/causal_model.py``):

  slots     [anchor | clean frames, oldest first]: the anchor is the video's first block, its K stored before
            RoPE; every other cached frame's K is stored after RoPE at its absolute frame position
  capacity  ``anchor + window`` frames: when a block's clean K/V do not fit, the oldest clean block leaves
            (FIFO behind the anchor); the anchor is never evicted
  a window  the joint call over frames [s, s + n): queries and keys at their absolute positions; it attends
            [anchor | the last ``window − n − anchor`` clean frames before s | the window itself], no mask
            (bidirectional inside the window); the anchor is rotated to sit right before the oldest clean
            frame it attends (at its own positions while nothing was evicted); a window that holds the first
            block attends only itself
  a context pass  (the loop's, on a block's clean x0 after its last step) writes the block's K/V and attends
            the last ``window`` cached frames up to and including the block — the anchor (rotated at its own
            positions) only while anchor and clean frames together fit the window

Calls are recorded in ``calls`` (kind, frames, the attended frames and their RoPE time), for the traces the
golden cases compare. K/V are kept in the compute dtype (no fp8 storage, no shared buffers: the window's own K/V
are most of what a call attends).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch

from ..files.memory_trace import label
from ..model.attention import attention
from ..model.rope import apply_rope, compute_dtype, rope_table
from .strategies.base import Strategy


class RollingCache:
    """Per-layer K/V [B, (anchor + window)·tokens, heads, head_dim] and the frames they hold."""

    def __init__(self, num_layers: int, batch: int, grid_hw: tuple[int, int], heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device, window: int, anchor: int):
        if anchor < 1 or window < anchor:
            raise ValueError(f"rolling cache: anchor {anchor} and window {window} frames must be ≥ 1 and anchor ≤ window")
        self.grid_hw, self.tokens, self.head_dim, self.dtype = grid_hw, grid_hw[0] * grid_hw[1], head_dim, dtype
        self.window, self.anchor = window, anchor
        shape = (batch, (anchor + window) * self.tokens, heads, head_dim)
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(num_layers)]
        label("kv cache", *self.k, *self.v)
        self.clean = 0               # clean frames cached after the anchor
        self.first = anchor          # global frame of the first clean slot
        self.block_start, self.block_frames = -1, 0    # the block the next context pass writes
        self.evicted = 0             # frames evicted so far
        self.calls: list[dict] = []  # one record per model call (see the module docstring)
        self._call: dict | None = None     # the current call's plan, made at its first layer
        self._window: tuple[int, int] | None = None
        self.strategy = Strategy()   # what the loop asks of a cache's strategy (no hooks are called here)

    # ------------------------------------------------------------------ what the next calls are
    def begin_block(self, start_frame: int, num_frames: int) -> None:
        """The block whose clean K/V the next context pass writes (the loop calls this at each block's start)."""
        if start_frame != self.block_start:
            self.block_start, self.block_frames = start_frame, num_frames

    @contextmanager
    def window_call(self, start_frame: int, num_frames: int, timesteps: list[float] | None = None):
        """Model calls inside are the rolling window's joint call over frames [start, start + n)."""
        self._window, self._call = (start_frame, num_frames), None
        try:
            yield
        finally:
            self._window, self._call = None, None
            if self.calls and timesteps is not None:
                self.calls[-1]["timesteps"] = list(timesteps)

    # ------------------------------------------------------------------ per-layer attention
    def attend(self, layer: int, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        if layer == 0 or self._call is None:
            self._call = self._plan(q.shape[1] // self.tokens)
        plan = self._call
        table = plan["table"]
        qr, kr = apply_rope(q, table), apply_rope(k, table)
        if plan["kind"] == "context":
            self._store(layer, k, kr, v)
        keys, values = self._gather(layer, plan)
        return attention(qr, torch.cat(keys + [kr], 1) if keys else kr, torch.cat(values + [v], 1) if values else v)

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> None:
        """A context pass's last layer: its K/V stored, nothing attended."""
        if self._call is None or layer == 0:
            self._call = self._plan(k.shape[1] // self.tokens)
        self._store(layer, k, apply_rope(k, self._call["table"]), v)

    def _plan(self, frames: int) -> dict:
        """Which frames this call attends and where (made once per call, at its first layer)."""
        if self._window is not None:
            start, n = self._window
            if n != frames:
                raise RuntimeError(f"rolling window of {n} frames called with {frames} frames")
            plan = self._window_plan(start, n)
        else:
            plan = self._context_plan(frames)
        plan["table"] = self._table(torch.arange(plan["start"], plan["start"] + frames))
        self.calls.append({k: v for k, v in plan.items() if k not in ("table", "slots", "anchor_table")})
        return plan

    def _window_plan(self, start: int, n: int) -> dict:
        plan = {"kind": "window", "start": start, "frames": n, "anchor_at": None, "clean": [], "slots": None}
        if start < self.anchor:           # the window holds the first block: it attends itself only
            plan["attended"] = list(range(start, start + n))
            return plan
        budget = max(self.window - n - self.anchor, 0)
        lo = max(self.first, start - budget)
        if start > self.first + self.clean:
            raise RuntimeError(f"rolling window at frame {start}: the cache holds clean frames up to "
                               f"{self.first + self.clean - 1}")
        at = lo - self.anchor          # right before the oldest clean frame attended (0 until one was evicted)
        plan.update(anchor_at=at, clean=[lo, start], slots=(self.anchor + lo - self.first, self.anchor + start - self.first),
                    anchor_table=self._table(torch.arange(at, at + self.anchor)),
                    attended=list(range(self.anchor)) + list(range(lo, start)) + list(range(start, start + n)))
        return plan

    def _context_plan(self, frames: int) -> dict:
        start = self.block_start
        if frames != self.block_frames:
            raise RuntimeError(f"context pass of {frames} frames for a block of {self.block_frames}")
        plan = {"kind": "context", "start": start, "frames": frames, "anchor_at": None, "clean": [], "slots": None}
        if start < self.anchor:
            plan["attended"] = list(range(start, start + frames))
            return plan
        if start != self.first + self.clean:
            raise RuntimeError(f"context pass of frame {start}: the next clean frame is {self.first + self.clean}")
        if self.anchor + self.clean + frames > self.anchor + self.window:       # FIFO behind the anchor
            self._evict(self.anchor + self.clean + frames - self.anchor - self.window)
        if self.anchor + self.clean + frames <= self.window:
            lo, at = self.first, 0
            plan.update(anchor_at=0, anchor_table=self._table(torch.arange(0, self.anchor)))
        else:
            lo, at = start + frames - self.window, None
        plan.update(clean=[lo, start], slots=(self.anchor + lo - self.first, self.anchor + start - self.first),
                    attended=(list(range(self.anchor)) if at is not None else []) + list(range(lo, start + frames)))
        return plan

    def _gather(self, layer: int, plan: dict) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """[anchor (rotated) | clean frames] K and V attended before the call's own frames."""
        t, keys, values = self.tokens, [], []
        if plan["anchor_at"] is not None:
            keys.append(apply_rope(self.k[layer][:, :self.anchor * t], plan["anchor_table"]))
            values.append(self.v[layer][:, :self.anchor * t])
        if plan["slots"] is not None and plan["slots"][1] > plan["slots"][0]:
            a, b = plan["slots"]
            keys.append(self.k[layer][:, a * t:b * t])
            values.append(self.v[layer][:, a * t:b * t])
        return keys, values

    def _store(self, layer: int, k: torch.Tensor, k_rotated: torch.Tensor, v: torch.Tensor) -> None:
        """The context pass's block into its slots: the anchor's K raw, every later block's K rotated."""
        t, start, n = self.tokens, self.block_start, k.shape[1]
        if start < self.anchor:
            self.k[layer][:, start * t:start * t + n] = k
            self.v[layer][:, start * t:start * t + n] = v
            return
        a = (self.anchor + start - self.first) * t
        self.k[layer][:, a:a + n] = k_rotated
        self.v[layer][:, a:a + n] = v
        if layer == len(self.k) - 1:
            self.clean = start + n // t - self.first

    def _evict(self, frames: int) -> None:
        """Drop the ``frames`` oldest clean frames; the rest shift left behind the anchor."""
        t, a = self.tokens, self.anchor * self.tokens
        keep = (self.clean - frames) * t
        for buf in (*self.k, *self.v):
            buf[:, a:a + keep] = buf[:, a + frames * t:a + frames * t + keep].clone()
        self.first += frames
        self.clean -= frames
        self.evicted += frames

    def _table(self, positions: torch.Tensor) -> torch.Tensor:
        return rope_table(positions.to(self.k[0].device), *self.grid_hw, self.head_dim).to(compute_dtype(self.dtype))
