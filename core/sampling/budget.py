"""Device memory a run needs, by what holds it: weights, the KV cache window, the context buffers (relative-RoPE
strategies, core/context/kv_cache.py), the retrieved frames, the prompt's K/V and the largest transient — under
the run's memory settings (guidance doubles the cache, the buffers and the text K/V: a second cache for the
negative prompt; core/sampling/memory.py). The real-size dry run (core/app/dry_run.py) measures the same
kinds from the code; benchmarks/vram.py shows both side by side."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import SamplingConfig
from .memory import EXACT, MemorySettings
from ..model.backbone import BackboneModel
from ..retrieval.pool import frame_bytes


@dataclass(frozen=True)
class DeviceBytes:
    """Bytes on the compute device for one run, by what holds them — the kinds of the memory trace
    (core/files/memory_trace.py) that the dry run (core/app/dry_run.py) measures; benchmarks/vram.py checks the
    sum against it at every family, strategy and memory setting."""
    weights: int
    cache: int          # K/V of the window's frames
    buffers: int        # context buffers (relative-RoPE strategies; with an fp8 cache, the window de-quantised)
    retrieved: int = 0  # retrieval: one block's retrieved frames as read from the pool (shared context: one layer)
    text: int = 0       # the prompt's cross-attention K/V, every layer
    activations: int = 0    # the largest transient: one block's forward, or a frame leaving for the pool

    @property
    def total(self) -> int:
        return self.weights + self.cache + self.buffers + self.retrieved + self.text + self.activations

    @property
    def needed(self) -> int:
        """What to ask the device for: the peak +10 % for the allocator's rounding and fragmentation."""
        return int(1.1 * self.total)


def _itemsize(p: torch.Tensor, dtype: torch.dtype) -> int:
    """Bytes per element of a parameter run in ``dtype``: its own when narrower than 16 bits (fp8 weights)."""
    own = p.element_size()
    return own if own < 2 else torch.finfo(dtype).bits // 8


def weight_bytes(model: BackboneModel, dtype: torch.dtype, block_swap: int = 0) -> int:
    """Device bytes of the weights (and buffers) in ``dtype`` (fp8 layers at their own size); ``block_swap``
    blocks live in host memory, two of them on the device at once while they are streamed."""
    total = sum(p.numel() * _itemsize(p, dtype) for p in (*model.parameters(), *model.buffers()))
    blocks = model.blocks
    if not block_swap or not blocks:
        return total
    one = sum(p.numel() * _itemsize(p, dtype) for p in (*blocks[0].parameters(), *blocks[0].buffers()))
    n = min(block_swap, len(blocks))
    return total - n * one + min(n, 2) * one


def _kv_frame(c, tokens: int, batch: int, itemsize: int, kv: str) -> int:
    """Bytes of one frame's K and V in one layer: compute dtype, or fp8 with a float32 scale per token and head."""
    if kv == "fp8":
        return 2 * batch * tokens * c.num_heads * (c.head_dim + 4)
    return 2 * batch * tokens * c.dim * itemsize


def device_bytes(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], batch: int,
                 dtype: torch.dtype, memory: MemorySettings = EXACT) -> DeviceBytes:
    """The device bytes of a run (``model``: the backbone interface of core/model/backbone.py, possibly on the
    meta device; ``memory``: resolved settings, core/sampling/memory.py). The history pool is not counted: by
    default it lives in host RAM (a device-tier pool is placed by check_memory)."""
    if not memory.resolved:
        raise ValueError(f"device_bytes needs resolved memory settings, not {memory}")
    c, L = model.cfg, model.cfg.num_layers
    item = torch.finfo(dtype).bits // 8
    tokens = (latent_hw[0] // c.patch_size[1]) * (latent_hw[1] // c.patch_size[2])
    exact, stored = _kv_frame(c, tokens, batch, item, "exact"), _kv_frame(c, tokens, batch, item, memory.kv)
    own = getattr(cfg.block_sampler, "memory_frames", None)   # a sampler with its own cache: rolling
    cached, per_call = own(cfg) if own else (cfg.window, cfg.frames_per_block)
    cache = L * cached * stored
    top_k = cfg.retrieval.top_k if cfg.retrieval is not None else 0
    if own:
        buffers = cfg.window * exact            # one layer's attended K/V, joined for the call
    elif cfg.policy.relative_rope:
        buffers = (L * cfg.window * exact if memory.context == "per-layer" else
                   cfg.window * exact + L * top_k * stored)
    else:
        buffers = cfg.window * exact if memory.kv == "fp8" else 0
    retrieved = (1 if memory.context == "shared" else L) * top_k * exact    # shared: read one layer at a time
    text = L * 2 * batch * c.text_len * c.dim * item
    if cfg.guided:       # the negative prompt's own cache, context buffers and text K/V (core/sampling/guidance.py)
        cache, buffers, text = 2 * cache, 2 * buffers, 2 * text
    block = batch * per_call * tokens
    forward = block * (2 * c.ffn_dim + 4 * c.dim) * item
    evict = exact if cfg.retrieval is not None else 0       # one layer's frame on its way to the pool
    return DeviceBytes(weight_bytes(model, dtype, memory.block_swap), cache, buffers, retrieved, text,
                       max(forward, evict))


def device_bytes_needed(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], batch: int,
                        dtype: torch.dtype, memory: MemorySettings = EXACT) -> int:
    """Bytes to ask the compute device for one run (``device_bytes(...).needed``)."""
    return device_bytes(model, cfg, latent_hw, batch, dtype, memory).needed


LATENT_COPIES = 3   # the video's latents at the peak: the loop's output, the finished blocks kept for a partial
#                     (core/app/resume.py BlockCollector) and the result's own copy (then written out)


@dataclass(frozen=True)
class RunBytes:
    """What one run of ``frames`` latent frames needs, by what holds it: ``device`` (DeviceBytes) on the compute
    device; ``latents`` (one float32 copy of the video [B, T, C, H, W], held LATENT_COPIES times at the peak) in
    RAM; ``pool_frames`` frames of ``pool_frame_bytes`` each in the history pool (retrieval only; where they live
    is the pool's budget's business)."""
    device: DeviceBytes
    latents: int
    pool_frames: int = 0
    pool_frame_bytes: int = 0

    @property
    def activations(self) -> int:
        return self.device.activations

    @property
    def working(self) -> int:
        """Device bytes besides the weights."""
        return self.device.total - self.device.weights

    @property
    def host(self) -> int:
        """RAM for the latents at their peak (the pool apart)."""
        return LATENT_COPIES * self.latents

    @property
    def pool(self) -> int:
        return self.pool_frames * self.pool_frame_bytes


def run_bytes(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], frames: int, batch: int,
              dtype: torch.dtype, memory: MemorySettings = EXACT) -> RunBytes:
    """The bytes of a run (``RunBytes``), from the model's sizes alone (a model on the meta device is fine)."""
    c = model.cfg
    tokens = (latent_hw[0] // c.patch_size[1]) * (latent_hw[1] // c.patch_size[2])
    latents = batch * frames * c.in_dim * latent_hw[0] * latent_hw[1] * 4
    pool_frames = pool_bytes = 0
    if cfg.retrieval is not None:
        pool_frames = max(0, frames - cfg.window)                            # every frame that left the window
        k = [torch.empty(batch, tokens, c.num_heads, c.head_dim, dtype=dtype, device="meta")] * c.num_layers
        latent = torch.empty(batch, c.in_dim, *latent_hw, dtype=dtype, device="meta")
        pool_bytes = frame_bytes(cfg.retrieval.pool.storage, k, k, latent)
    return RunBytes(device_bytes(model, cfg, latent_hw, batch, dtype, memory), latents, pool_frames, pool_bytes)
