"""Every block sampler by name (``SamplingConfig.sampler``, CLI ``--sampler``): ``renoise``, ``unipc``, ``rolling``."""
from __future__ import annotations

from .base import BlockSampler
from .renoise import Renoise
from .rolling import Rolling
from .unipc import UniPC

SAMPLERS: dict[str, BlockSampler] = {s.name: s for s in (Renoise(), UniPC(), Rolling())}
NAMES = tuple(SAMPLERS)


def get_sampler(name: str) -> BlockSampler:
    """The sampler called ``name``; an unknown name is an error that lists the known ones."""
    if name not in SAMPLERS:
        raise ValueError(f"sampler '{name}' is unknown; use one of {', '.join(NAMES)}")
    return SAMPLERS[name]
