"""Device memory a run needs: weights, the KV cache window and, in the relative-RoPE strategies, the context
buffers (core/context/kv_cache.py: window frames of rotated K/V, the retrieved frames among them)."""
from __future__ import annotations

import torch

from .config import SamplingConfig
from ..model.backbone import BackboneModel


def device_bytes_needed(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], batch: int,
                        dtype: torch.dtype) -> int:
    """Bytes on the compute device for one run: weights + K/V of the window's frames (twice in the relative-RoPE
    strategies: rag, infinity-rope, memrope, deep-forcing keep context buffers of the window's size, where
    rag's retrieved frames live), +25 % working space. The history pool is not counted: by default it lives in
    host RAM. ``model``: the backbone interface (core/model/backbone.py): its parameters and the sizes of
    its ``cfg`` (patch, layers, dim)."""
    c = model.cfg
    itemsize = torch.finfo(dtype).bits // 8
    weights = sum(p.numel() for p in model.parameters()) * itemsize
    tokens = (latent_hw[0] // c.patch_size[1]) * (latent_hw[1] // c.patch_size[2])
    per_frame = 2 * c.num_layers * batch * tokens * c.dim * itemsize
    frames = cfg.window * (2 if cfg.policy.relative_rope else 1)
    return int(1.25 * (weights + per_frame * frames))
