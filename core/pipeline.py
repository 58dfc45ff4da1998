"""The retrieval-augmented AR block loop (SPEC §4) and its reproducibility contract (§9)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from .encoder import RetrievalEncoder
from .history_pool import HistoryPool
from .kv_cache import CachePolicy, KVCache
from .attention import attention
from .model import TextContext, WanTransformer
from .rope import apply_rope, rope_table
from .retrieval import log_record, make_describer, select_frames
from .schedule import FlowMatchSchedule

MODES = ("rag", "native")


@dataclass
class GenerationConfig:
    """Sampling settings; defaults are the published LongLive-RAG configs."""
    mode: str = "rag"                 # "rag": [sink ‖ retrieved ‖ local]; "native": sliding window
    frames_per_block: int = 3
    local_attn_size: int = 12         # L, cache capacity in latent frames
    sink_size: int = 1                # S
    memory_size: int = 6              # K, retrieved frames per block (rag)
    recent_exclude: int = 5           # R, most recently evicted frames never retrieved
    steps: Sequence[int] = (1000, 750, 500, 250)
    warp_steps: bool = True
    shift: float = 5.0
    context_noise: float = 0.0

    def policy(self) -> CachePolicy:
        if self.mode not in MODES:
            raise ValueError(f"mode '{self.mode}' is unknown; use one of {MODES}")
        if self.mode == "native":
            return CachePolicy.native(self.local_attn_size, self.sink_size)
        return CachePolicy.retrieval(self.local_attn_size, self.sink_size, self.memory_size)


@dataclass
class BlockUpdate:
    """Sent to the callback after each block: x0 [B, F, C, H, W] in model space."""
    block: int
    num_blocks: int
    start_frame: int
    x0: torch.Tensor
    retrieval: dict | None
    timing: dict


@dataclass
class GenerationResult:
    latents: torch.Tensor                 # [B, C, T, H, W] model-normalised, float32, CPU
    retrieval_log: list[dict] = field(default_factory=list)
    descriptors: torch.Tensor | None = None   # [B, T, D] float32
    timings: list[dict] = field(default_factory=list)
    pool_bytes_per_frame: int = 0
    peak_memory_mb: float = 0.0               # CUDA: max allocated; CPU: process peak RSS


def initial_noise(seed: int, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Generator]:
    """SPEC §9: one CPU generator; the first draw is the whole video's noise [B, C, T, H, W], float32."""
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32), g


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def generate(model: WanTransformer, prompt_embeds: torch.Tensor, num_frames: int, latent_hw: tuple[int, int],
             seed: int, config: GenerationConfig | None = None, encoder: RetrievalEncoder | None = None,
             pool: HistoryPool | None = None,
             callback: Callable[[BlockUpdate], None] | None = None) -> GenerationResult:
    """Generate ``num_frames`` latent frames of ``latent_hw`` for each prompt.

    prompt_embeds [B, L, text_dim]; the model's parameters decide device and compute dtype.
    Returns latents [B, 16, T, H, W] in the model's normalised space. ``callback`` runs after
    every block (raise from it to stop; the partial state is dropped).
    """
    cfg = config or GenerationConfig()
    policy = cfg.policy()
    policy.check(cfg.frames_per_block)
    nf = cfg.frames_per_block
    if num_frames <= 0 or num_frames % nf:
        raise ValueError(f"frames={num_frames} latent frames must be a positive multiple of the block size {nf}")
    h, w = latent_hw
    p = model.cfg.patch_size
    if h % p[1] or w % p[2]:
        raise ValueError(f"latent size {h}x{w} must be divisible by the patch size {p[1]}x{p[2]}")
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    b = prompt_embeds.shape[0]
    c = model.cfg.in_dim

    schedule = FlowMatchSchedule(cfg.shift)
    timesteps = schedule.denoising_timesteps(cfg.steps, cfg.warp_steps)
    noise, g = initial_noise(seed, (b, c, num_frames, h, w))
    noise_btchw = noise.permute(0, 2, 1, 3, 4)

    text = model.encode_text(prompt_embeds.to(device=device, dtype=dtype))
    output = torch.zeros(b, num_frames, c, h, w, dtype=torch.float32)
    on_evict = None
    if policy.retrieved > 0:
        pool = pool if pool is not None else HistoryPool(compute_device=device)
        if len(pool):
            raise ValueError("the history pool already holds frames of another video; pass a fresh HistoryPool")
        pool.recompute = lambda lat: recompute_kv(model, text, lat, cfg.context_noise)

        def on_evict(frame: int, ks: list[torch.Tensor], vs: list[torch.Tensor]) -> None:
            pool.append(ks, vs, latent=output[:, frame].to(dtype))  # lossless: x0 was in dtype
    else:
        pool = None
    cache = KVCache(policy, model.cfg.num_layers, b, (h // p[1], w // p[2]), model.cfg.num_heads,
                    model.cfg.head_dim, dtype, device, on_evict)
    describe = make_describer(encoder)
    descriptors: torch.Tensor | None = None
    result = GenerationResult(output)
    num_blocks = num_frames // nf

    def run(x_bfchw: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        flow = model(x_bfchw.permute(0, 2, 1, 3, 4), t, text, cache).permute(0, 2, 1, 3, 4)
        return schedule.x0_from_flow(flow.flatten(0, 1), x_bfchw.flatten(0, 1),
                                     t.flatten()).unflatten(0, (b, nf))

    for blk in range(num_blocks):
        start = blk * nf
        _sync(device)
        t0 = time.perf_counter()
        choice = None
        if policy.retrieved > 0 and descriptors is not None:
            choice = select_frames(descriptors, start, len(pool), policy.sink, cfg.recent_exclude, policy.retrieved)
        cache.begin_block(start, nf)
        if choice is not None:
            cache.set_retrieved(*pool.gather(choice.pool_indices, device, dtype))
        _sync(device)
        t1 = time.perf_counter()

        x = noise_btchw[:, start:start + nf].to(device=device, dtype=dtype)
        for i, ts in enumerate(timesteps):
            t = torch.full((b, nf), float(ts), device=device, dtype=torch.float32)
            x0 = run(x, t)
            if i + 1 < len(timesteps):
                fresh = torch.randn((b * nf, c, h, w), generator=g, dtype=torch.float32).to(device=device, dtype=dtype)
                t_next = torch.full((b * nf,), float(timesteps[i + 1]), device=device, dtype=torch.float32)
                x = schedule.add_noise(x0.flatten(0, 1), fresh, t_next).unflatten(0, (b, nf))
        _sync(device)
        t2 = time.perf_counter()

        output[:, start:start + nf] = x0.float().cpu()
        desc = describe(x0.flatten(0, 1)).float().unflatten(0, (b, nf))
        if descriptors is None:
            descriptors = torch.zeros(b, num_frames, desc.shape[-1], dtype=torch.float32, device=desc.device)
        descriptors[:, start:start + nf] = desc

        run(x0, torch.full((b, nf), float(cfg.context_noise), device=device, dtype=torch.float32))
        _sync(device)
        t3 = time.perf_counter()

        record = log_record(blk, start, choice, policy.sink) if choice is not None else None
        if record is not None:
            result.retrieval_log.append(record)
        timing = {"block": blk, "retrieval_s": t1 - t0, "denoise_s": t2 - t1, "context_s": t3 - t2,
                  "total_s": t3 - t0}
        result.timings.append(timing)
        if callback is not None:
            callback(BlockUpdate(blk, num_blocks, start, x0, record, timing))

    result.latents = output.permute(0, 2, 1, 3, 4).contiguous()
    result.descriptors = descriptors.cpu() if descriptors is not None else None
    result.pool_bytes_per_frame = pool.bytes_per_frame if pool is not None else 0
    result.peak_memory_mb = peak_memory_mb(device)
    return result


class _CaptureKV:
    """Attention context for recomputing K/V of isolated frames: each frame attends to itself at
    temporal position 0; the pre-RoPE K and V of every layer are kept."""

    def __init__(self, grid_hw: tuple[int, int], head_dim: int, device: torch.device):
        self.table = rope_table(torch.zeros(1, dtype=torch.long, device=device), *grid_hw, head_dim)
        self.k: list[torch.Tensor] = []
        self.v: list[torch.Tensor] = []

    def attend(self, layer, q, k, v):
        self.k.append(k)
        self.v.append(v)
        return attention(apply_rope(q, self.table), apply_rope(k, self.table), v)


def recompute_kv(model: WanTransformer, text: TextContext, latents: torch.Tensor, t: float
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """K/V of frames from their clean latents alone (the ``latent`` pool storage; an approximation).

    latents [B, n, C, H, W] → (k, v) [layers, B, n·tokens, heads, d], K before RoPE.
    """
    b, n, c, h, w = latents.shape
    param = next(model.parameters())
    x = latents.to(device=param.device, dtype=param.dtype).reshape(b * n, c, 1, h, w)
    rep = TextContext([(k.repeat_interleave(n, 0), v.repeat_interleave(n, 0)) for k, v in text.kv])
    p = model.cfg.patch_size
    ctx = _CaptureKV((h // p[1], w // p[2]), model.cfg.head_dim, param.device)
    model(x, torch.full((b * n, 1), float(t), device=param.device), rep, ctx)
    k = torch.stack(ctx.k).reshape(len(ctx.k), b, n * ctx.k[0].shape[1], *ctx.k[0].shape[2:])
    v = torch.stack(ctx.v).reshape(len(ctx.v), b, n * ctx.v[0].shape[1], *ctx.v[0].shape[2:])
    return k, v
