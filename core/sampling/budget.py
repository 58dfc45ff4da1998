"""Device memory a run needs: weights, the KV cache window and, in the relative-RoPE strategies, the context
buffers (core/context/kv_cache.py: window frames of rotated K/V, the retrieved frames among them)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import SamplingConfig
from ..model.backbone import BackboneModel
from ..retrieval.pool import frame_bytes


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


LATENT_COPIES = 3   # the video's latents at the peak: the loop's output, the finished blocks kept for a partial
#                     (core/app/resume.py BlockCollector) and the result's own copy (then written out)


@dataclass(frozen=True)
class RunBytes:
    """What one run of ``frames`` latent frames needs, by what holds it: ``device`` (weights, window cache, context
    buffers) and ``activations`` (one block's forward: hidden states, q/k/v, the feed-forward layer) on the compute
    device; ``latents`` (one float32 copy of the video [B, T, C, H, W], held LATENT_COPIES times at the peak) in
    RAM; ``pool_frames`` frames of ``pool_frame_bytes`` each in the history pool (retrieval only; where they live
    is the pool's budget's business)."""
    device: DeviceBytes
    activations: int
    latents: int
    pool_frames: int = 0
    pool_frame_bytes: int = 0

    @property
    def working(self) -> int:
        """Device bytes besides the weights: cache, context buffers, activations."""
        return self.device.cache + self.device.buffers + self.activations

    @property
    def host(self) -> int:
        """RAM for the latents at their peak (the pool apart)."""
        return LATENT_COPIES * self.latents

    @property
    def pool(self) -> int:
        return self.pool_frames * self.pool_frame_bytes


def run_bytes(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], frames: int, batch: int,
              dtype: torch.dtype) -> RunBytes:
    """The bytes of a run (``RunBytes``), from the model's sizes alone (a model on the meta device is fine)."""
    c = model.cfg
    itemsize = torch.finfo(dtype).bits // 8
    tokens = (latent_hw[0] // c.patch_size[1]) * (latent_hw[1] // c.patch_size[2])
    block = batch * cfg.frames_per_block * tokens
    # a layer's peak per token: q, k, v, the attention's output and the feed-forward layer (~6·dim in the Wan
    # transformers), ×2 for what the next op writes while the last is read; float32 where the layers upcast
    activations = 2 * block * 12 * c.dim * max(itemsize, 4)
    latents = batch * frames * c.in_dim * latent_hw[0] * latent_hw[1] * 4
    pool_frames = pool_bytes = 0
    if cfg.retrieval is not None:
        pool_frames = max(0, frames - cfg.window)                            # every frame that left the window
        k = [torch.empty(batch, tokens, c.num_heads, c.head_dim, dtype=dtype, device="meta")] * c.num_layers
        latent = torch.empty(batch, c.in_dim, *latent_hw, dtype=dtype, device="meta")
        pool_bytes = frame_bytes(cfg.retrieval.pool.storage, k, k, latent)
    return RunBytes(device_bytes(model, cfg, latent_hw, batch, dtype), activations, latents, pool_frames, pool_bytes)
