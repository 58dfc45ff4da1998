"""History Pool, Retrieve Context and AR Block Sampler."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..core.history_pool import HistoryPool, tiers_from
from ..core.latent_format import to_raw_space
from ..core.pipeline import GenerationConfig, generate
from . import bridge
from .loaders import BackboneHandle, EncoderHandle

CATEGORY = "LongLive-RAG/sampling"
LOCATIONS = {"host (RAM)": "host", "device (GPU)": "device", "disk": "disk"}
STORAGES = {"kv (exact)": "kv", "kv-half (approximate)": "kv-half", "latent (approximate, smallest)": "latent"}


@dataclass(frozen=True)
class PoolSettings:
    """LLRAG_POOL: where evicted frames live; a fresh pool is made from it for every run."""
    location: str = "host"
    budget_mb: float | None = None
    storage: str = "kv"
    directory: str | None = None

    def make(self, device: torch.device) -> HistoryPool:
        return HistoryPool(tiers_from(self.location, self.budget_mb), storage=self.storage, compute_device=device,
                           directory=self.directory)


@dataclass(frozen=True)
class RetrievalSettings:
    """LLRAG_RETRIEVAL: how each block finds its past frames."""
    encoder: EncoderHandle
    top_k: int = 6
    recent_exclude: int = 5
    pool: PoolSettings = field(default_factory=PoolSettings)


@dataclass(frozen=True)
class RetrievalLog:
    """LLRAG_LOG: one record per block that retrieved, plus what is needed to plot it."""
    records: tuple
    num_frames: int
    sink: int
    window: int
    mode: str


class HistoryPoolNode:
    DESCRIPTION = ("Where the K/V of frames that leave the sliding window are kept for retrieval. At 480p one "
                   "frame costs ~274 MB (Wan 1.3B, bf16): a 30 s video keeps ~30 GB, 2 min ~128 GB. Give RAM or "
                   "VRAM a budget and the rest spills to disk, or store compactly (approximate).")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("LLRAG_POOL",)
    RETURN_NAMES = ("pool",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "location": (list(LOCATIONS), {"default": "host (RAM)",
                                           "tooltip": "First place for evicted frames: host RAM (the published behaviour), "
                                                      "the GPU (fastest, uses VRAM) or disk (memory-mapped files)."}),
            "budget_mb": ("INT", {"default": 0, "min": 0, "max": 10**7, "step": 256,
                                  "tooltip": "Memory this location may use (MB); beyond it frames spill to the next "
                                             "(GPU → RAM → disk). 0 = unlimited. Must be 0 for disk."}),
            "storage": (list(STORAGES), {"default": "kv (exact)",
                                         "tooltip": "kv: exact. kv-half: half the bytes, APPROXIMATE (slightly different video). "
                                                    "latent: ~0.2 MB per frame, K/V recomputed on retrieval without the frame's "
                                                    "original context — APPROXIMATE, and slower per retrieving block."}),
            "directory": ("STRING", {"default": "",
                                     "tooltip": "Folder for the disk tier (empty = system temp). Files are deleted after the run."}),
        }}

    def build(self, location, budget_mb, storage, directory):
        tiers_from(LOCATIONS[location], budget_mb or None)  # validate now, not mid-run
        return (PoolSettings(LOCATIONS[location], budget_mb or None, STORAGES[storage], directory or None),)


class RetrieveContext:
    DESCRIPTION = ("Turns on LongLive-RAG retrieval: before each block, the top-K past frames most similar to the "
                   "latest frame are added to the attention context. Leave the sampler's 'retrieval' input "
                   "unconnected for the plain sliding window (the baseline).")
    CATEGORY = CATEGORY
    FUNCTION = "build"
    RETURN_TYPES = ("LLRAG_RETRIEVAL",)
    RETURN_NAMES = ("retrieval",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "encoder": ("LLRAG_ENCODER", {"tooltip": "From Load Latent Encoder (retrieval encoder or avg_pool)."}),
            "top_k": ("INT", {"default": 6, "min": 1, "max": 32,
                              "tooltip": "K: past frames retrieved per block (published: 6). The local window shrinks "
                                         "to window − sink − K frames; keep window ≥ sink + K + frames per block."}),
            "recent_exclude": ("INT", {"default": 5, "min": 0, "max": 64,
                                       "tooltip": "R: the most recently evicted frames are never retrieved (they sit next "
                                                  "to the window). Published: 5."}),
            "similarity": (["cosine"], {"tooltip": "Descriptor similarity (the published method uses cosine)."}),
        }, "optional": {
            "pool": ("LLRAG_POOL", {"tooltip": "History Pool settings; default: exact K/V in RAM."}),
        }}

    def build(self, encoder, top_k, recent_exclude, similarity, pool=None):
        return (RetrievalSettings(encoder, top_k, recent_exclude, pool or PoolSettings()),)


def parse_steps(text: str) -> tuple[int, ...]:
    try:
        steps = tuple(int(s) for s in text.replace(" ", "").split(",") if s)
    except ValueError:
        raise ValueError(f"steps '{text}' must be comma-separated integers such as 1000,750,500,250") from None
    if not steps:
        raise ValueError("steps must list at least one timestep, e.g. 1000,750,500,250")
    return steps


def latent_frames_for(length: int, frames_per_block: int) -> int:
    """Video frames → latent frames ((length − 1)/4 + 1), rounded up to whole blocks."""
    latent = (max(length, 1) - 1 + 3) // 4 + 1
    return -(-latent // frames_per_block) * frames_per_block


class ARBlockSampler:
    DESCRIPTION = ("Generates a long video block by block with the backbone's KV cache (sink + sliding window), "
                   "optionally with LongLive-RAG retrieval. Outputs a Wan LATENT for VAE Decode / LongLive-RAG "
                   "Decode and the retrieval log. Same seed → same video on any device.")
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("LATENT", "LLRAG_LOG")
    RETURN_NAMES = ("latent", "retrieval_log")
    OUTPUT_TOOLTIPS = ("Wan2.1 video latent [B,16,T,H/8,W/8].", "Which past frames each block retrieved.")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "backbone": ("LLRAG_BACKBONE", {"tooltip": "From Load Backbone."}),
            "positive": ("CONDITIONING", {"tooltip": "Prompt from CLIPTextEncode with the Wan umT5 text encoder "
                                                     "(CLIPLoader type 'wan', umt5_xxl)."}),
            "width": ("INT", {"default": 832, "min": 32, "max": 4096, "step": 16,
                              "tooltip": "Multiple of 16. The backbones were trained at 832×480."}),
            "height": ("INT", {"default": 480, "min": 32, "max": 4096, "step": 16, "tooltip": "Multiple of 16."}),
            "length": ("INT", {"default": 477, "min": 1, "max": 100001, "step": 4,
                               "tooltip": "Video frames at 16 fps. Wan packs 4 frames per latent frame plus the first: "
                                          "use 4k+1; latent frames = (length−1)/4+1, rounded up to whole blocks. "
                                          "477 = 120 latent frames ≈ 30 s; 957 ≈ 60 s; 1917 ≈ 2 min."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF,
                             "tooltip": "Noise seed; all noise comes from one CPU generator, so a seed gives the same "
                                        "video on every device."}),
            "sink_size": ("INT", {"default": 1, "min": 0, "max": 16,
                                  "tooltip": "First latent frames kept in the cache forever. Must match the backbone's "
                                             "training (1 for the published configs)."}),
            "local_attn_size": ("INT", {"default": 12, "min": 3, "max": 64,
                                        "tooltip": "KV cache window in latent frames (published: 12)."}),
            "frames_per_block": ("INT", {"default": 3, "min": 1, "max": 16,
                                         "tooltip": "Latent frames per block; must match the backbone's training (3)."}),
            "steps": ("STRING", {"default": "1000,750,500,250",
                                 "tooltip": "Denoising timesteps of the few-step backbones (warped on the shift-5 grid)."}),
            "shift": ("FLOAT", {"default": 5.0, "min": 0.1, "max": 20.0, "step": 0.1,
                                "tooltip": "Flow-matching timestep shift (published: 5.0)."}),
        }, "optional": {
            "retrieval": ("LLRAG_RETRIEVAL", {"tooltip": "From Retrieve Context. Unconnected = native sliding window."}),
        }}

    def sample(self, backbone: BackboneHandle, positive, width, height, length, seed, sink_size, local_attn_size,
               frames_per_block, steps, shift, retrieval: RetrievalSettings | None = None):
        if width % 16 or height % 16:
            raise ValueError(f"width {width} and height {height} must be multiples of 16")
        cfg = GenerationConfig(mode="rag" if retrieval else "native", frames_per_block=frames_per_block,
                               local_attn_size=local_attn_size, sink_size=sink_size,
                               memory_size=retrieval.top_k if retrieval else 6,
                               recent_exclude=retrieval.recent_exclude if retrieval else 5,
                               steps=parse_steps(steps), shift=shift)
        cfg.policy().check(frames_per_block)
        embeds = conditioning_embeds(positive, backbone.backbone.config.text_dim)
        frames = latent_frames_for(length, frames_per_block)
        bridge.make_room(needed_bytes(backbone, cfg, height // 8, width // 8, embeds.shape[0]), backbone.device)
        model = backbone.backbone.model.to(backbone.device)
        encoder = retrieval.encoder.model if retrieval else None
        if encoder is not None:
            encoder.to(backbone.device)
        pool = retrieval.pool.make(backbone.device) if retrieval else None
        progress = bridge.Progress(frames // frames_per_block)

        def on_block(update):
            progress.update(update.block + 1, update.x0.permute(0, 2, 1, 3, 4))
            bridge.check_interrupted()

        try:
            res = generate(model, embeds, frames, (height // 8, width // 8), seed, cfg, encoder=encoder, pool=pool,
                           callback=on_block)
        finally:
            if pool is not None:
                pool.close()
            if backbone.offload:
                model.to(bridge.offload_device())
                if encoder is not None:
                    encoder.to(bridge.offload_device())
            bridge.empty_cache()
        latent = {"samples": to_raw_space(res.latents)}
        log = RetrievalLog(tuple(res.retrieval_log), frames, sink_size, local_attn_size, cfg.mode)
        return latent, log


def conditioning_embeds(positive, text_dim: int) -> torch.Tensor:
    """CONDITIONING [[tensor [B, L, D], {...}], ...] → the first entry's embeddings [B, L, D] (float32, CPU)."""
    try:
        emb = positive[0][0]
    except (TypeError, IndexError, KeyError):
        raise ValueError("positive must be a CONDITIONING from CLIPTextEncode (Wan umT5 text encoder)") from None
    if not torch.is_tensor(emb) or emb.dim() != 3:
        raise ValueError(f"positive conditioning holds {type(emb).__name__} {getattr(emb, 'shape', '')}; "
                         "expected embeddings [1, 512, 4096] from the Wan text encoder")
    if emb.shape[-1] != text_dim:
        raise ValueError(f"positive conditioning is {emb.shape[-1]} wide but the backbone expects {text_dim}: load the "
                         "text encoder with CLIPLoader type 'wan' (umt5_xxl), not a CLIP/T5 of another model")
    return emb.detach().float().cpu()




def needed_bytes(backbone: BackboneHandle, cfg: GenerationConfig, h: int, w: int, batch: int) -> int:
    """Device memory for one run: weights + K/V cache + retrieved buffer + ~25% working space."""
    c = backbone.backbone.config
    itemsize = torch.finfo(backbone.dtype).bits // 8
    weights = sum(p.numel() for p in backbone.backbone.model.parameters()) * itemsize
    tokens = (h // c.patch_size[1]) * (w // c.patch_size[2])
    per_frame = 2 * c.num_layers * batch * tokens * c.dim * itemsize
    cache = per_frame * (cfg.local_attn_size + (cfg.memory_size if cfg.mode == "rag" else 0))
    return int(1.25 * (weights + cache))
