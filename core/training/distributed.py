"""One process per GPU under ``torchrun``: who am I, which prompts are mine."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence, TypeVar

import torch

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def device(self, requested: str | None) -> torch.device:
        """cuda:LOCAL_RANK under torchrun with CUDA; otherwise what was asked (default cuda if present)."""
        if requested is None:
            requested = "cuda" if torch.cuda.is_available() else "cpu"
        dev = torch.device(requested)
        if dev.type == "cuda" and dev.index is None and self.world > 1:
            return torch.device("cuda", self.local_rank)
        return dev


def current_rank() -> Rank:
    """Read torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK); a plain run is rank 0 of 1."""
    try:
        return Rank(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                    int(os.environ.get("LOCAL_RANK", 0)))
    except ValueError as exc:
        raise ValueError(f"torchrun environment is malformed: {exc}") from exc


def shard(items: Sequence[T], rank: Rank) -> list[tuple[int, T]]:
    """This rank's (global index, item) pairs: round-robin, so every item goes to exactly one rank."""
    return [(i, item) for i, item in enumerate(items) if i % rank.world == rank.rank]


def barrier(rank: Rank) -> None:
    """Wait for every rank when a process group is up (gloo on CPU, nccl on CUDA); no-op otherwise."""
    if rank.world > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()


def init_process_group(rank: Rank, device: torch.device) -> None:
    if rank.world > 1 and torch.distributed.is_available() and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
