"""The KV cache's regime (core/context/kv_cache.py): capacity, sink, retrieved frames, how RoPE is applied."""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CachePolicy:
    """The cache's regime. Window and sink are the run's (its family's or strategy's): no default here."""
    window: int               # L: cache capacity in frames
    sink: int                 # S: first frames kept forever
    top_k: int = 0            # K: retrieved frames per block (0 = plain sliding window)
    relative_rope: bool = False

    @classmethod
    def native(cls, window: int, sink: int) -> "CachePolicy":
        return cls(window, sink, 0, False)

    @classmethod
    def retrieval(cls, window: int, sink: int, top_k: int) -> "CachePolicy":
        return cls(window, sink, top_k, True)

    @property
    def local_frames(self) -> int:
        """The window budget: frames of the cache (current block included) attended besides sink and retrieved."""
        return self.window - self.sink - self.top_k

    def check(self, frames_per_block: int) -> None:
        if self.sink < 0 or self.top_k < 0 or frames_per_block < 1:
            raise ValueError(f"sink ({self.sink}), top_k ({self.top_k}) and frames per block "
                             f"({frames_per_block}) must be ≥ 0, ≥ 0 and ≥ 1")
        if self.local_frames < frames_per_block:
            raise ValueError(
                f"local attention window {self.window} leaves {self.local_frames} local frames after sink "
                f"{self.sink} and top_k {self.top_k}, fewer than the {frames_per_block} frames of a "
                f"block; use a window (local_attn_size) ≥ {self.sink + self.top_k + frames_per_block}")
