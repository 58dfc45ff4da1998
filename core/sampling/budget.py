"""Device memory a run needs: weights, the KV cache window and, in the relative-RoPE strategies, the context
buffers (core/context/kv_cache.py: window frames of rotated K/V, the retrieved frames among them)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import SamplingConfig
from ..model.backbone import BackboneModel


@dataclass(frozen=True)
class DeviceBytes:
    """Bytes on the compute device for one run, by what holds them."""
    weights: int
    cache: int          # K/V of the window's frames
    buffers: int        # context buffers of the window's size (relative-RoPE strategies; else 0)

    @property
    def needed(self) -> int:
        """What to ask the device for: everything +25 % working space."""
        return int(1.25 * (self.weights + self.cache + self.buffers))


def device_bytes(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], batch: int,
                 dtype: torch.dtype) -> DeviceBytes:
    """Weights + K/V of the window's frames (twice in the relative-RoPE strategies: rag, infinity-rope, memrope,
    deep-forcing keep context buffers of the window's size, where rag's retrieved frames live). The history pool
    is not counted: by default it lives in host RAM. ``model``: the backbone interface (core/model/backbone.py),
    possibly on the meta device."""
    c = model.cfg
    itemsize = torch.finfo(dtype).bits // 8
    weights = sum(p.numel() for p in model.parameters()) * itemsize
    tokens = (latent_hw[0] // c.patch_size[1]) * (latent_hw[1] // c.patch_size[2])
    per_frame = 2 * c.num_layers * batch * tokens * c.dim * itemsize
    cache = per_frame * cfg.window
    return DeviceBytes(weights, cache, cache if cfg.policy.relative_rope else 0)


def device_bytes_needed(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], batch: int,
                        dtype: torch.dtype) -> int:
    """Bytes to ask the compute device for one run (``device_bytes(...).needed``)."""
    return device_bytes(model, cfg, latent_hw, batch, dtype).needed
