"""LongLive-RAG core: the retrieval-augmented autoregressive video engine (no ComfyUI inside).

Python API (shared by the ComfyUI nodes and ``python -m core``)::

    from core import load_backbone, load_encoder, generate, sampling_config, RetrievalConfig
    backbone = load_backbone("causal_forcing.pt", dtype=torch.bfloat16, device="cuda")
    encoder = load_encoder("ae_latent_mem.pt", device="cuda")          # or None for avg_pool
    config = sampling_config(backbone.defaults, retrieval=RetrievalConfig(top_k=6))   # the family's settings + these
    result = generate(backbone.model, prompt_embeds, num_frames=120, latent_hw=(60, 104), seed=0,
                      config=config, encoder=encoder)
    result.latents        # [B, 16, T, H, W], model-normalised latent space
    result.retrieval_log  # one record per block that retrieved

Another long-context strategy over the same cache and model (native, rag, infinity-rope, memrope,
deep-forcing; its window and sink on the backbone's family unless given):
``config=strategy_config("memrope", backbone.defaults)``; ``core.context.strategies.describe(name)`` has its
defaults, trade-offs and reference. ``core.sampling.request.replace(config, strategy=...)`` re-resolves what follows.
A whole run (length, size, start, info text) is planned by ``plan_run(RunRequest(...), family)``.

A story (prompts that change over time): pass a ``PromptSchedule`` instead of ``prompt_embeds``;
``sampling_config(family, switch="recache")`` says what a switch does; ``result.switches`` says where
each prompt began.
"""
from .sampling.config import STRATEGIES, SamplingConfig, SwitchConfig
from .sampling.request import SamplingRequest, resolve
from .app.plan import RunPlan, RunRequest, plan_run, sampling_config, strategy_config
from .retrieval.config import PoolConfig, RetrievalConfig
from .formats import Backbone, CheckpointError, load_backbone
from .retrieval.encoder import EncoderConfig, RetrievalEncoder, load_encoder
from .retrieval.pool import HistoryPool
from .context.kv_cache import CachePolicy, KVCache
from .model.transformer import WanConfig, WanTransformer
from .sampling.loop import BlockUpdate, GenerationResult, generate, initial_noise
from .sampling.prompts import PromptSchedule, Segment

__all__ = [
    "Backbone", "CheckpointError", "load_backbone", "EncoderConfig", "RetrievalEncoder", "load_encoder",
    "HistoryPool", "CachePolicy", "KVCache", "WanConfig", "WanTransformer", "BlockUpdate", "PoolConfig", "RetrievalConfig", "SamplingConfig",
    "GenerationResult", "generate", "initial_noise", "SwitchConfig", "PromptSchedule", "Segment", "STRATEGIES",
    "strategy_config", "sampling_config", "SamplingRequest", "resolve", "RunPlan", "RunRequest", "plan_run",
]
