"""The history pool: what is kept of each frame that leaves the KV cache window.

Entry i is global frame ``sink + i`` (frames leave in order). Stored per frame, for every
layer: K (before RoPE) and V, each [layers, B, tokens, heads, head_dim]. Entries are real
copies taken at eviction — never views of the cache, which keeps moving.

Where entries live is a list of tiers tried in order — ``device`` (GPU memory), ``host``
(pinned RAM when the compute device is CUDA), ``disk`` (one memory-mapped file per frame) —
each with an optional byte budget; a frame that does not fit a tier spills to the next one.

What is stored (``storage``):
  ``kv``       exact K/V in the compute dtype (reference behaviour, the default);
  ``kv-half``  K/V in half the bytes (bfloat16 for float32 compute, float8-e4m3 with a
               per-frame/layer/head scale for 16-bit compute) — an approximation;
  ``latent``   only the frame's clean latent [B, C, H, W]; its K/V are recomputed when it is
               retrieved, without the frame's original context — an approximation.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import torch

from .config import PoolConfig


# (latents [B, n, C, H, W]) -> (k, v) each [layers, B, n·tokens, heads, d] before RoPE
Recompute = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class Tier:
    kind: str                      # "device" | "host" | "disk"
    budget_bytes: int | None = None
    used_bytes: int = 0

    def fits(self, nbytes: int) -> bool:
        return self.budget_bytes is None or self.used_bytes + nbytes <= self.budget_bytes


class _Entry:
    """One stored frame: tensors (or file paths) with their tier and quantisation scales."""
    __slots__ = ("tier", "payload", "scales", "nbytes")

    def __init__(self, tier, payload, scales, nbytes):
        self.tier, self.payload, self.scales, self.nbytes = tier, payload, scales, nbytes


class HistoryPool:
    def __init__(self, config: PoolConfig | None = None, compute_device: str | torch.device = "cpu",
                 recompute: Recompute | None = None):
        """``recompute`` turns stored latents back into K/V; the ``latent`` storage needs it."""
        self.config = config = config if config is not None else PoolConfig()
        if config.storage == "latent" and recompute is None:
            raise ValueError("latent pool storage needs a recompute function (generate() passes it)")
        budget = config.budget_bytes
        self.tiers = [Tier(kind, budget if i == 0 else None) for i, kind in enumerate(config.tier_kinds)]
        self.storage = config.storage
        self.compute_device = torch.device(compute_device)
        self._dir_root = Path(config.directory) if config.directory is not None else None
        self._dir: Path | None = None
        self._entries: list[_Entry] = []
        self.recompute = recompute
        self.peak_bytes = 0

    # ------------------------------------------------------------------ bookkeeping
    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_per_frame(self) -> int:
        return self._entries[0].nbytes if self._entries else 0

    @property
    def total_bytes(self) -> int:
        return sum(t.used_bytes for t in self.tiers)

    def usage(self) -> dict:
        """Bytes and frames per tier (for logs, timings and the ComfyUI node)."""
        out = {t.kind: {"bytes": t.used_bytes, "budget": t.budget_bytes, "frames": 0} for t in self.tiers}
        for e in self._entries:
            out[e.tier.kind]["frames"] += 1
        return out

    # ------------------------------------------------------------------ writing
    def append(self, k: Sequence[torch.Tensor], v: Sequence[torch.Tensor], latent: torch.Tensor | None = None) -> None:
        """Add the next evicted frame: per-layer k/v [B, tokens, heads, d] (views are fine; copied here),
        and its clean latent [B, C, H, W] (required for the latent storage)."""
        if self.storage == "latent":
            if latent is None:
                raise ValueError("latent pool storage needs each evicted frame's latent")
            payload, scales = [latent.detach()], None
        else:
            ks, vs = torch.stack(list(k)), torch.stack(list(v))
            payload, scales = self._encode(ks, vs)
        nbytes = sum(t.numel() * t.element_size() for t in payload)
        nbytes += sum(s.numel() * s.element_size() for s in scales) if scales else 0
        tier = next((t for t in self.tiers if t.fits(nbytes)), None)
        if tier is None:
            raise MemoryError(f"history pool budget exhausted: a frame needs {nbytes / 2**20:.1f} MB and every "
                              f"tier ({[t.kind for t in self.tiers]}) is full; raise --pool-budget-mb or add disk")
        self._entries.append(_Entry(tier, self._place(tier, payload), scales, nbytes))
        tier.used_bytes += nbytes
        self.peak_bytes = max(self.peak_bytes, self.total_bytes)

    def _encode(self, ks: torch.Tensor, vs: torch.Tensor):
        if self.storage == "kv":
            return [ks, vs], None
        if ks.element_size() >= 4:
            return [ks.to(torch.bfloat16), vs.to(torch.bfloat16)], None
        out, scales = [], []
        for x in (ks, vs):  # x [layers, B, T, heads, d]: one scale per layer/sample/head
            s = x.abs().amax(dim=(2, 4), keepdim=True).float().clamp_min(1e-12) / 448.0
            out.append((x.float() / s).to(torch.float8_e4m3fn))
            scales.append(s)
        return out, scales

    @staticmethod
    def _decode(tensors: list[torch.Tensor], scales: list[torch.Tensor] | None, dtype: torch.dtype) -> list[torch.Tensor]:
        if scales is None:
            return [t.to(dtype) for t in tensors]
        return [(t.float() * s.to(t.device)).to(dtype) for t, s in zip(tensors, scales)]

    def _place(self, tier: Tier, payload: list[torch.Tensor]):
        if tier.kind == "device":
            return [t.to(self.compute_device, copy=True) for t in payload]
        if tier.kind == "host":
            pin = self.compute_device.type == "cuda"
            out = []
            for t in payload:
                buf = torch.empty(t.shape, dtype=t.dtype, pin_memory=pin)
                buf.copy_(t)
                out.append(buf)
            return out
        return [self._write_file(t) for t in payload]

    def _write_file(self, t: torch.Tensor):
        if self._dir is None:
            root = self._dir_root or Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._dir = Path(tempfile.mkdtemp(prefix="longlive_rag_pool_", dir=root))
        path = self._dir / f"{len(self._entries):06d}_{len(list(self._dir.iterdir())):02d}.bin"
        cpu = t.detach().to("cpu").contiguous()
        with open(path, "wb") as fh:
            fh.write(cpu.reshape(-1).view(torch.uint8).numpy())
        return (path, tuple(cpu.shape), cpu.dtype)

    # ------------------------------------------------------------------ reading
    def _load(self, entry: _Entry) -> list[torch.Tensor]:
        if entry.tier.kind != "disk":
            return entry.payload
        out = []
        for path, shape, dtype in entry.payload:
            numel = 1
            for s in shape:
                numel *= s
            out.append(torch.from_file(str(path), shared=False, size=numel, dtype=dtype).view(shape))
        return out

    def gather(self, indices: torch.Tensor, device: torch.device, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """indices [B, n] pool entries per sample → (k, v) [layers, B, n·tokens, heads, d] before RoPE,
        on ``device`` in ``dtype``. Called once per block; the result serves every step and layer."""
        b, n = indices.shape
        if self.storage == "latent":
            lat = torch.stack([torch.stack([self._entries[i].payload[0][bi] for i in row])
                               for bi, row in enumerate(indices.tolist())])           # [B, n, C, H, W]
            return self.recompute(lat.to(device))
        ks, vs = [], []
        for bi, row in enumerate(indices.tolist()):
            for i in row:
                entry = self._entries[i]
                raw = [t[:, bi].to(device, non_blocking=True) for t in self._load(entry)]
                scales = [s[:, bi] for s in entry.scales] if entry.scales else None
                k, v = self._decode(raw, scales, dtype)
                ks.append(k)
                vs.append(v)
        k = torch.stack(ks, 1)   # [layers, B·n, T, heads, d]
        v = torch.stack(vs, 1)
        layers, _, t, h, d = k.shape
        return k.reshape(layers, b, n * t, h, d), v.reshape(layers, b, n * t, h, d)

    # ------------------------------------------------------------------ lifetime
    def close(self) -> None:
        """Free every entry and delete the disk files."""
        self._entries.clear()
        for t in self.tiers:
            t.used_bytes = 0
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass
