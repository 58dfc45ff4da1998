"""A block's retrieved frames decoded one layer at a time: what a memory-saving run hands the KV cache.

``RetrievedLayers`` stands for K or V of the choice, [layers, B, n·tokens, heads, d] before RoPE, and decodes layer
``i`` only when indexed (``[i]`` → a new [B, n·tokens, heads, d] on the device): the device never holds the whole
choice in the compute dtype, only one layer of it, and a read ahead (core/retrieval/prefetch.py) holds nothing on
the device at all — its rows stay in RAM (a disk row in the pool's host buffer) until the cache takes them. The
values are those ``HistoryPool.gather`` returns. The rows must stay as they are until every layer was read (the
cache reads them all at once, in ``set_retrieved``).
"""
from __future__ import annotations

from typing import Callable

import torch

from ..files.memory_trace import label


class RetrievedLayers:
    def __init__(self, layout, sources: list[tuple[int, int, torch.Tensor]], field: int, b: int, n: int,
                 device: torch.device, dtype: torch.dtype, copied: Callable[[], None]):
        """``sources``: (sample, j, row) of each retrieved frame (uint8 rows of ``layout``); ``field``: 0 K, 1 V;
        ``copied``: called after each layer's copies were queued (the host buffer may be refilled once done)."""
        self.layout, self.sources, self.field, self.n = layout, sources, field, n
        self.device, self.dtype, self.copied = device, dtype, copied
        layers, t, h, d = layout.fields[field][0]
        self.tokens = t
        self.shape = torch.Size((layers, b, n * t, h, d))
        self.scaled = len(layout.fields) == 4

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, layer: int) -> torch.Tensor:
        cuda, t = self.device.type == "cuda", self.tokens
        out = torch.empty(self.shape[1:], dtype=self.dtype, device=self.device)
        for bi, j, row in self.sources:
            x = self.layout.view(row, self.field)[layer]
            if self.scaled:
                s = self.layout.view(row, 2 + self.field)[layer]
                x = x.to(self.device, non_blocking=cuda).float() * s.to(self.device, non_blocking=cuda)
            out[bi, j * t:(j + 1) * t].copy_(x, non_blocking=cuda)
        self.copied()
        label("retrieved", out)
        return out
