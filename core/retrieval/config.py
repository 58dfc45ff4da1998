"""Retrieval settings: how many past frames join each block's context and where the history pool keeps them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

POOL_LOCATIONS = ("device", "host", "disk")      # tiers, fastest first; a full tier spills to the next
PREFETCH = ("auto", "on", "off")
POOL_STORAGES = ("kv", "kv-half", "latent")



@dataclass(frozen=True)
class PoolConfig:
    """Where the K/V of frames that leave the window are kept (retrieval only).

    ``location``: the first tier (``device`` GPU memory, ``host`` RAM, ``disk`` files); ``budget_mb``
    caps it (None = unlimited), frames beyond it spill to the slower tiers. ``storage``: ``kv`` exact,
    ``kv-half`` and ``latent`` approximate (see history_pool.py). ``directory``: the disk tier's folder.
    """
    location: str = "host"
    budget_mb: float | None = None
    storage: str = "kv"
    directory: str | None = None

    def __post_init__(self):
        if self.location not in POOL_LOCATIONS:
            raise ValueError(f"pool location '{self.location}' is unknown; use one of {POOL_LOCATIONS}")
        if self.storage not in POOL_STORAGES:
            raise ValueError(f"pool storage '{self.storage}' is unknown; use one of {POOL_STORAGES}")
        if self.budget_mb is not None and self.budget_mb < 0:
            raise ValueError(f"pool budget {self.budget_mb} MB must be ≥ 0")
        if self.budget_mb is not None and self.location == "disk":
            raise ValueError("a budget for the disk tier is not supported: disk is the last tier; "
                             "choose pool location host or device with a budget to spill to disk")

    @property
    def tier_kinds(self) -> tuple[str, ...]:
        """The tiers in the order they are filled: the chosen location, then every slower one."""
        return POOL_LOCATIONS[POOL_LOCATIONS.index(self.location):]

    @property
    def budget_bytes(self) -> int | None:
        return None if self.budget_mb is None else int(self.budget_mb * 2**20)


@dataclass(frozen=True)
class RetrievalConfig:
    """LongLive-RAG retrieval: before each block, the ``top_k`` most similar past frames join the context."""
    top_k: int = 6
    recent_exclude: int = 5
    pool: PoolConfig = field(default_factory=PoolConfig)
    # read the next block's frames while the current block's context pass runs (a reader thread; on CUDA
    # a side stream): same frames, same values. auto = on CUDA only: on a CPU the reader's copies compete
    # with the compute for the same cores (measured slower, see README "Speed")
    prefetch: str = "auto"

    def __post_init__(self):
        if self.top_k < 1:
            raise ValueError(f"top_k {self.top_k} must be ≥ 1 (for no retrieval, run the native sliding window)")
        if self.recent_exclude < 0:
            raise ValueError(f"recent_exclude {self.recent_exclude} must be ≥ 0")
        if self.prefetch not in PREFETCH:
            raise ValueError(f"prefetch '{self.prefetch}' is unknown; use one of {PREFETCH}")

    def prefetches(self, device: torch.device) -> bool:
        """Whether a run on ``device`` reads ahead (never with the latent storage: its K/V need the model)."""
        on = self.prefetch == "on" or (self.prefetch == "auto" and device.type == "cuda")
        return on and self.pool.storage != "latent"
