"""Block samplers: how one block's noise becomes its x0, each a small object behind one protocol.

``base``      the protocol (``BlockSampler``) and what a sampler gets for a block (``NoisyBlock``)
``renoise``   x0, then fresh noise at the next timestep (Self-Forcing, LongLive 1.0)
``unipc``     a fresh UniPC solver per block (LongLive 2.0)
``rolling``   a rolling window of blocks at increasing noise, one joint call each (Rolling Forcing)
``registry``  names → samplers (``SAMPLERS``, ``NAMES``, ``get_sampler``)
"""
from .base import BlockSampler, NoisyBlock, StepSettings
from .registry import NAMES, SAMPLERS, get_sampler

__all__ = ["BlockSampler", "NoisyBlock", "StepSettings", "NAMES", "SAMPLERS", "get_sampler"]
