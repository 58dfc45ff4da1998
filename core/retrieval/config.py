"""Retrieval settings: how many past frames join each block's context and where the history pool keeps them."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

POOL_LOCATIONS = ("device", "host", "disk")      # tiers, fastest first; a full tier spills to the next
PREFETCH = ("auto", "on", "off")
POOL_STORAGES = ("kv", "kv-half", "kv-fp8", "latent")
AUTO = "auto"           # a memory tier's budget: from the memory that exists (``auto_budget``)


def auto_budget(room: int | None, reserved: int = 0) -> int | None:
    """The ``auto`` budget of a memory tier: half of what its ``room`` (free bytes: RAM, or the GPU's) leaves after
    ``reserved`` (what the rest of the run still takes there); the other half stays free for everything else
    (the system, other programs, ComfyUI's models). None (no limit) when the room is unknown."""
    return None if room is None else max(0, (room - reserved) // 2)



@dataclass(frozen=True)
class PoolConfig:
    """Where the K/V of frames that leave the window are kept (retrieval only).

    ``location``: the first tier (``device`` GPU memory, ``host`` RAM, ``disk`` files); ``budget_mb``
    caps it: ``auto`` (default: half of what the memory that exists leaves after the rest of the run,
    ``auto_budget``), a number of MB, or None (unlimited: every frame in that memory, however long the video);
    frames beyond it spill to the slower tiers, each memory tier after the first with an ``auto`` budget, the
    disk last. ``storage``: ``kv`` exact, ``kv-half``, ``kv-fp8`` and ``latent`` approximate (see pool.py). ``directory``:
    the disk tier's folder.
    """
    location: str = "host"
    budget_mb: float | str | None = AUTO
    storage: str = "kv"
    directory: str | None = None

    def __post_init__(self):
        if self.location not in POOL_LOCATIONS:
            raise ValueError(f"pool location '{self.location}' is unknown; use one of {POOL_LOCATIONS}")
        if self.storage not in POOL_STORAGES:
            raise ValueError(f"pool storage '{self.storage}' is unknown; use one of {POOL_STORAGES}")
        if isinstance(self.budget_mb, str) and self.budget_mb != AUTO:
            raise ValueError(f"pool budget '{self.budget_mb}' is unknown; give a number of MB, '{AUTO}' or None "
                             "(unlimited)")
        if self.explicit_budget and self.budget_mb < 0:
            raise ValueError(f"pool budget {self.budget_mb} MB must be ≥ 0")
        if self.explicit_budget and self.location == "disk":
            raise ValueError("a budget for the disk tier is not supported: disk is the last tier; "
                             "choose pool location host or device with a budget to spill to disk")

    @property
    def tier_kinds(self) -> tuple[str, ...]:
        """The tiers in the order they are filled: the chosen location, then every slower one."""
        return POOL_LOCATIONS[POOL_LOCATIONS.index(self.location):]

    @property
    def explicit_budget(self) -> bool:
        """Whether the first tier has a number of MB as its budget (not ``auto``, not unlimited)."""
        return self.budget_mb is not None and self.budget_mb != AUTO

    def budget_for(self, tier: int, room: int | None, reserved: int = 0) -> int | None:
        """The byte budget of memory tier number ``tier`` (0: the first): the first tier's own (its MB; None:
        unlimited), else — and for ``auto`` — ``auto_budget(room, reserved)``."""
        if tier == 0 and self.budget_mb != AUTO:
            return None if self.budget_mb is None else int(self.budget_mb * 2**20)
        return auto_budget(room, reserved)


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
