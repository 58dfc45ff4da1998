"""The history pool: clean K/V (every layer) of each frame evicted from the KV cache.

Entry i is global frame ``sink + i`` (frames leave the window in order). Entries are real
copies taken at eviction — never views of the cache, which keeps moving.
"""
from __future__ import annotations

import torch


class HistoryPool:
    """Stores per evicted frame K and V as [layers, B, tokens, heads, head_dim] on ``device``."""

    def __init__(self, device: str | torch.device = "cpu", dtype: torch.dtype | None = None):
        self.device = torch.device(device)
        self.dtype = dtype
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []

    def __len__(self) -> int:
        return len(self._k)

    def append(self, k: torch.Tensor, v: torch.Tensor) -> None:
        """Add one frame: k/v [layers, B, tokens, heads, head_dim] (copied)."""
        dtype = self.dtype or k.dtype
        pin = self.device.type == "cpu" and k.is_cuda
        for src, dst in ((k, self._k), (v, self._v)):
            buf = torch.empty(src.shape, dtype=dtype, device=self.device, pin_memory=pin)
            buf.copy_(src)
            dst.append(buf)

    @property
    def bytes_per_frame(self) -> int:
        if not self._k:
            return 0
        return 2 * self._k[0].numel() * self._k[0].element_size()

    @property
    def total_bytes(self) -> int:
        return self.bytes_per_frame * len(self)

    def gather(self, indices: torch.Tensor, device: torch.device, dtype: torch.dtype
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """indices [B, k] pool entries per sample → (k, v) [layers, B, k·tokens, heads, head_dim] on device.

        One transfer per frame for all layers; the caller reuses the result for the whole block.
        """
        b, n = indices.shape
        ks, vs = [], []
        for store, out in ((self._k, ks), (self._v, vs)):
            for bi in range(b):
                for idx in indices[bi].tolist():
                    out.append(store[idx][:, bi])  # [layers, tokens, heads, d]
        k = torch.stack(ks, 1).to(device=device, dtype=dtype, non_blocking=True)  # [layers, B·k, T, n, d]
        v = torch.stack(vs, 1).to(device=device, dtype=dtype, non_blocking=True)
        layers, _, t, h, d = k.shape
        return k.reshape(layers, b, n * t, h, d), v.reshape(layers, b, n * t, h, d)
