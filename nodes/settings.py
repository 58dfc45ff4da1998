"""Sampler Settings: the sampling settings the AR Block Sampler's own widgets do not show (the CLI's
--sampler, --context-noise, --shot-rope-offset, --multi-shot-sink, --shot-clean-recache, --guidance-scale), each
"auto" = the backbone family's; and the
device-memory settings (--context-buffers, --kv-cache, --block-swap), each "auto" = chosen from the free memory."""
from __future__ import annotations

from dataclasses import dataclass

from ..core.sampling.config import SAMPLERS
from ..core.sampling.memory import CONTEXTS, KVS, MemorySettings
from .bridge import io

CATEGORY = "LongLive-RAG/sampling"
AUTO = "auto"
SHOT_SINK = {AUTO: None, "on": True, "off": False}


@dataclass(frozen=True)
class SamplerSettings:
    """LLRAG_SAMPLER_SETTINGS: SamplingRequest fields the artist set (None = the family's)."""
    sampler: str | None = None
    context_noise: float | None = None
    shot_rope_offset: float | None = None
    shot_sink: bool | None = None
    shot_clean_recache: bool | None = None
    guidance_scale: float | None = None
    memory: MemorySettings = MemorySettings()       # device memory (core/sampling/memory.py), not a sampling field

    def fields(self) -> dict:
        return {k: v for k, v in vars(self).items() if v is not None and k != "memory"}


SETTINGS = io.Custom("LLRAG_SAMPLER_SETTINGS")     # carries a SamplerSettings


class SamplerSettingsNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_SamplerSettings", display_name="Sampler Settings (LongLive-RAG)", category=CATEGORY,
            description=("Less common sampling settings for the AR Block Sampler's 'settings' input; every 'auto' "
                         "(or -1) keeps the backbone family's published value. The same settings as the command "
                         "line's --sampler, --context-noise, --shot-rope-offset, --multi-shot-sink, --shot-clean-recache "
                         "and --guidance-scale."),
            inputs=[
                io.Combo.Input("sampler", options=[AUTO, *SAMPLERS], default=AUTO,
                               tooltip="How a block is denoised: renoise (x0, then fresh noise at each step: "
                                       "Self-Forcing, LongLive), unipc (a UniPC solver per block: LongLive 2.0) or "
                                       "rolling (as many blocks as steps denoised together in one call, the first "
                                       "block kept as anchor: Rolling Forcing; window 21, sink 3, native strategy, "
                                       "one prompt, no guidance). auto = the backbone's. The sampler's 'steps' are "
                                       "read for the one chosen."),
                io.Float.Input("context_noise", default=0.0, min=0.0, max=1000.0, step=1.0,
                               tooltip="Timestep of the clean context pass that writes each block into the cache "
                                       "(0, as published)."),
                io.Float.Input("shot_rope_offset", default=-1.0, min=-1.0, max=1024.0, step=1.0,
                               tooltip="A cut line (new shot) moves the RoPE position of later frames by this many "
                                       "frames; -1 = the backbone's (LongLive 2.0: 8; Wan 1.3B: 0, off)."),
                io.Combo.Input("multi_shot_sink", options=list(SHOT_SINK), default=AUTO,
                               tooltip="Native strategy: keep a new shot's first block behind the sink until the next "
                                       "cut. auto = the backbone's (LongLive 2.0: on without retrieval)."),
                io.Combo.Input("shot_clean_recache", options=["off", "on"], default="off", optional=True,
                               tooltip="With the multi-shot sink: at a cut, clear the cache down to the sink before "
                                       "the new shot's first block is cached, so the new shot forgets the old one "
                                       "(LongLive 2.0's shot_clean_recache; off, as published)."),
                io.Float.Input("guidance_scale", default=1.0, min=0.0, max=30.0, step=0.1, optional=True,
                               tooltip="Classifier-free guidance: 1 = none (as published, one forward per step). "
                                       "Otherwise connect the sampler's 'negative': each step runs the model on the "
                                       "prompt and on the negative prompt, each over its own KV cache (twice the "
                                       "cache memory, twice the time), and mixes them; LongLive 2.0 trains with 3. "
                                       "Not with retrieval or the rolling sampler."),
                io.Combo.Input("context_buffers", options=list(CONTEXTS), default=AUTO, optional=True,
                               tooltip="Device memory (relative-RoPE strategies: rag, infinity-rope, memrope, "
                                       "deep-forcing): one context buffer per layer (fastest) or one shared by all "
                                       "(same video, ~5% slower, the window's K/V once instead of twice). auto: per "
                                       "layer when the GPU has room."),
                io.Combo.Input("kv_cache", options=list(KVS), default=AUTO, optional=True,
                               tooltip="exact: K/V in the compute dtype (as published); fp8: the window's K/V and the "
                                       "retrieved frames in float8 with a scale per token and head (about half the "
                                       "bytes; a small change to the video). auto: exact unless only fp8 fits."),
                io.Int.Input("block_swap", default=-1, min=-1, max=64, optional=True,
                             tooltip="Transformer blocks whose weights stay in RAM and are streamed to the GPU ahead "
                                     "of their use (same video, slower). -1 = auto: as few as fit; 0 = none."),
            ],
            outputs=[SETTINGS.Output(display_name="settings", tooltip="For the AR Block Sampler's 'settings' input.")],
        )

    @classmethod
    def execute(cls, sampler, context_noise, shot_rope_offset, multi_shot_sink, context_buffers=AUTO, kv_cache=AUTO,
                block_swap=-1, shot_clean_recache="off", guidance_scale=1.0) -> io.NodeOutput:
        memory = MemorySettings(context_buffers, kv_cache, AUTO if block_swap < 0 else block_swap)
        return io.NodeOutput(SamplerSettings(None if sampler == AUTO else sampler, context_noise or None,
                                             None if shot_rope_offset < 0 else shot_rope_offset,
                                             SHOT_SINK[multi_shot_sink], shot_clean_recache == "on" or None,
                                             None if guidance_scale == 1 else guidance_scale, memory))
