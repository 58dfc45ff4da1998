"""History Pool, Retrieve Context and AR Block Sampler."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from dataclasses import dataclass, replace

import torch

from ..core.app.plan import check_memory, choose_memory, plan_run
from ..core.sampling.memory import MemorySettings
from ..core.sampling.budget import device_bytes
from ..core.sampling.limits import MAX_SIDE_PX, MAX_WINDOW, max_video_frames
from ..core.latents.format import LatentFormat
from ..core.retrieval.config import AUTO as AUTO_BUDGET, PoolConfig, RetrievalConfig
from ..core.retrieval.pool import sweep_pool_files
from ..core.sampling.config import SamplingConfig
from ..core.sampling.noise import NOISE_CONTRACTS
from ..core.sampling.loop import generate
from ..core.sampling.prompts import PromptSchedule, as_schedule
from ..core.app.fact_text import fragment
from ..core.app.resume import BlockCollector
from . import bridge, comfy_model
from .bridge import io, ui
from .request import AUTO, run_request, sampling_request
from .loaders import BACKBONE, ENCODER, BackboneHandle, EncoderHandle
from .schedule import SCHEDULE, ScheduleInput, SwitchChoice
from .settings import SETTINGS, SamplerSettings
from .strategy import STRATEGY, StrategyInput
from .start import MEMO, continued_line, output_latent, run_key, start_latents

CATEGORY = "LongLive-RAG/sampling"
LOG = logging.getLogger(__name__)
LOCATIONS = {"host (RAM)": "host", "device (GPU)": "device", "disk": "disk"}
STORAGES = {"kv (exact)": "kv", "kv-half (approximate)": "kv-half",
            "kv-fp8 (approximate)": "kv-fp8", "latent (approximate, smallest)": "latent"}
DEFAULT_RETRIEVAL = RetrievalConfig()


@dataclass(frozen=True)
class RetrievalInput:
    """LLRAG_RETRIEVAL: the descriptor encoder and the retrieval settings (pool included)."""
    encoder: EncoderHandle
    config: RetrievalConfig


@dataclass(frozen=True)
class RetrievalLog:
    """LLRAG_LOG: one record per block that retrieved, plus what is needed to plot it."""
    records: tuple
    num_frames: int
    sink: int
    window: int
    frames_per_block: int          # the run's block size: the map's window band depends on it
    strategy: str                  # the strategy the run used (core/context/strategies)
    switches: tuple = ()           # GenerationResult.switches: where each prompt of a schedule began


POOL = io.Custom("LLRAG_POOL")                  # carries a core PoolConfig
RETRIEVAL = io.Custom("LLRAG_RETRIEVAL")        # carries a RetrievalInput
RETRIEVAL_LOG = io.Custom("LLRAG_LOG")          # carries a RetrievalLog


class HistoryPoolNode(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_HistoryPool", display_name="History Pool (LongLive-RAG)", category=CATEGORY,
            description=("Where the K/V of frames that leave the sliding window are kept for retrieval. At the "
                         f"published sizes in bf16 (exact storage): {fragment('pool-grows')}. By default (budget auto) it "
                         "keeps what the memory leaves free and spills the rest to disk; or store compactly "
                         "(approximate). Disk files go to the server's pool folder (ComfyUI's temp folder, or the "
                         f"folder set in the {bridge.POOL_DIR_ENV} environment variable or as '{bridge.POOL_FOLDER}' "
                         "in extra_model_paths.yaml) and are deleted after the run."),
            inputs=[
                io.Combo.Input("location", options=list(LOCATIONS), default="host (RAM)",
                               tooltip="First place for evicted frames: host RAM (the published behaviour), the GPU "
                                       "(fastest, uses VRAM) or disk (memory-mapped files)."),
                io.Int.Input("budget_mb", default=-1, min=-1, max=10**7, step=256,
                             tooltip="Memory this location may use (MB); beyond it frames spill to the next "
                                     "(GPU → RAM → disk). -1 = auto: half of the memory the rest of the run leaves "
                                     "free there, checked before the run. 0 = unlimited: every frame that leaves "
                                     f"the window stays in memory ({fragment('pool-grows')}). -1 or 0 for disk."),
                io.Combo.Input("storage", options=list(STORAGES), default="kv (exact)",
                               tooltip="kv: exact. kv-half: half the bytes, APPROXIMATE (slightly different video). "
                                       "kv-fp8: float8 with a scale per token and head, about half of bf16 K/V "
                                       "(a quarter of float32), APPROXIMATE. "
                                       f"latent: per frame {fragment('latent-pool-frame')}, K/V recomputed on "
                                       "retrieval without the frame's original context — APPROXIMATE, and slower per "
                                       "retrieving block."),
            ],
            outputs=[POOL.Output(display_name="pool",
                                 tooltip="History Pool settings for Retrieve Context's 'pool' input.")],
            hidden=[io.Hidden.prompt, io.Hidden.unique_id],      # to spot an old workflow's 'directory'
        )

    @classmethod
    def execute(cls, location, budget_mb, storage) -> io.NodeOutput:
        if saved_directory(cls.hidden):
            LOG.warning("History Pool: the workflow's 'directory' is ignored (an input of earlier versions); disk "
                        "files go to the server's pool folder, see the node's help")
        budget = AUTO_BUDGET if budget_mb < 0 else budget_mb or None        # 0: unlimited
        return io.NodeOutput(PoolConfig(LOCATIONS[location], budget, STORAGES[storage]))


def saved_directory(hidden) -> str:
    """The 'directory' a prompt saved by an earlier version gives this History Pool ('' if none): ignored."""
    prompt = getattr(hidden, "prompt", None) or {}
    node = prompt.get(getattr(hidden, "unique_id", None)) or {}
    return str(node.get("inputs", {}).get("directory") or "").strip()


class RetrieveContext(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_RetrieveContext", display_name="Retrieve Context (LongLive-RAG)", category=CATEGORY,
            description=("Turns on LongLive-RAG retrieval: before each block, the top-K past frames most similar to "
                         "the latest frame are added to the attention context. Leave the sampler's 'retrieval' "
                         "input unconnected for the plain sliding window (the baseline)."),
            inputs=[
                ENCODER.Input("encoder", tooltip="From Load Latent Encoder (retrieval encoder or avg_pool)."),
                io.Int.Input("top_k", default=DEFAULT_RETRIEVAL.top_k, min=1, max=32,
                             tooltip=f"K: past frames retrieved per block (published: {fragment('top-k')}). The "
                                     "local window shrinks to window − sink − K frames; keep window ≥ sink + K + "
                                     f"frames per block ({fragment('retrieval-window')})."),
                io.Int.Input("recent_exclude", default=DEFAULT_RETRIEVAL.recent_exclude, min=0, max=64,
                             tooltip="R: the most recently evicted frames are never retrieved (they sit next to the "
                                     f"window). Published: {fragment('recent-exclude')}."),
                POOL.Input("pool", optional=True, tooltip="History Pool settings; default: exact K/V in RAM with the auto "
                                                         "budget, the rest on disk."),
            ],
            outputs=[RETRIEVAL.Output(display_name="retrieval",
                                      tooltip="For the AR Block Sampler's 'retrieval' input.")],
        )

    @classmethod
    def execute(cls, encoder, top_k, recent_exclude, pool=None) -> io.NodeOutput:
        return io.NodeOutput(RetrievalInput(encoder, RetrievalConfig(top_k, recent_exclude, pool or PoolConfig())))


class ARBlockSampler(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="LongLiveRAG_ARBlockSampler", display_name="AR Block Sampler (LongLive-RAG)", category=CATEGORY,
            description=("Generates a long video block by block with the backbone's KV cache (sink + sliding "
                         "window), optionally with LongLive-RAG retrieval, from noise or from a 'start' (an image, a "
                         "clip, a previous sampler's video). Follows the backbone: settings left at auto (0, -1, "
                         f"'auto') are its published ones — {fragment('published')} — and "
                         "'info' says what was used. Outputs a Wan LATENT (Wan2.1, or Wan2.2 for LongLive 2.0) for "
                         "VAE Decode / LongLive-RAG Decode and the retrieval log. Same seed → same video on any "
                         "device. After a Cancel, queueing the same graph again (only 'length' may change) continues "
                         "where it stopped; a longer length extends the last run by replaying its frames."),
            inputs=sampler_inputs(),
            outputs=[
                io.Latent.Output(display_name="latent", tooltip="The whole video, the start included, in ComfyUI's "
                                                                 f"layout: {fragment('latent-layout')}."),
                RETRIEVAL_LOG.Output(display_name="retrieval_log", tooltip="Which past frames each block retrieved."),
                io.String.Output(display_name="info", tooltip="Frames made, any rounding of the length, whether the "
                                                               "run continued an earlier one, and the settings the "
                                                               "backbone's family gave it."),
            ],
        )

    @classmethod
    def execute(cls, backbone, positive, width, height, length, seed, sink_size, local_attn_size,
                frames_per_block, steps, shift, retrieval: RetrievalInput | None = None, noise_contract="per-block",
                start=None, strategy: StrategyInput | None = None, settings: SamplerSettings | None = None,
                negative=None) -> io.NodeOutput:
        backbone = comfy_model.as_backbone(backbone)
        bb = backbone.backbone
        family = bb.defaults
        positive, switch = prompt_input(positive, bb.config.text_dim)
        given = start_latents(start, family.latent) if start is not None else None
        request = sampling_request(family, strategy, retrieval.config if retrieval else None, switch, noise_contract,
                                   sink_size, local_attn_size, frames_per_block, steps, shift, settings)
        plan = plan_run(run_request(request, length, width, height, given), family, bb.info.preset)
        cfg, frames, latent_hw, p = server_pool(plan.config), plan.frames, plan.latent_hw, plan.start_frames
        prompts, timeline = run_prompts(positive, cfg, family.latent, frames)
        if negative is not None and cfg.guided:      # guidance 1 (the default) ignores it: the published path
            prompts = as_schedule(prompts, conditioning_embeds(negative, bb.config.text_dim, "negative"))
        encoder = retrieval.encoder.model if retrieval else None
        batch = prompts.batch if isinstance(prompts, PromptSchedule) else prompts.shape[0]
        memory = run_memory(backbone, plan, batch, settings)
        models = (bb.model, encoder)
        key = run_key(backbone, retrieval.encoder.name if retrieval else None, prompts, seed, frames, latent_hw, cfg,
                      given)
        continued = MEMO.prefix(key, models, frames, p, cfg.frames_per_block)
        prefix = continued.latents if continued is not None else given.model if given is not None else None
        progress = bridge.Progress(len(plan.blocks), family.latent.comfy_latent)
        collector = BlockCollector(progress.on_block)
        placed: list[str] = []
        try:
            with on_device(backbone, encoder, device_bytes(bb.model, cfg, latent_hw, batch, backbone.dtype,
                                                           memory.settings), memory.settings, placed) as model:
                res = generate(model, prompts, frames, latent_hw, seed, cfg, encoder=encoder, callback=collector,
                               start=prefix, cancel=bridge.check_interrupted, memory=memory.settings)
        except BaseException:
            MEMO.keep(key, models, collector.latents() if collector.blocks else None, p, stopped=True)
            raise
        MEMO.keep(key, models, res.latents, p, stopped=False)     # shared with the output, not a copy
        log = RetrievalLog(tuple(res.retrieval_log), frames, cfg.sink, cfg.window, cfg.frames_per_block, cfg.strategy,
                           tuple(res.switches))
        info = "\n".join([*plan.info(), memory.line, *placed, *continued_line(continued, family.latent), *timeline,
                          *res.notes])
        LOG.info("AR Block Sampler: %s", info.replace("\n", "; "))
        return io.NodeOutput(output_latent(res.latents, given), log, info, ui=ui.PreviewText(info))


def run_memory(backbone: BackboneHandle, plan, batch: int, settings: SamplerSettings | None):
    """The run's memory settings, auto resolved against the device (core/app/plan.py ``choose_memory``) and
    checked. A ComfyUI MODEL's weights are ComfyUI's to place: no block swap (ComfyUI loads what does not fit
    partially), and the device's room is what the run needs besides them."""
    bb = backbone.backbone
    asked = settings.memory if settings else MemorySettings()
    if backbone.comfy is not None:
        asked = replace(asked, block_swap=0)
    room = bridge.device_room(backbone.device)
    memory = choose_memory(plan, bb.model, batch, backbone.device, backbone.dtype, asked, device_room=room)
    check_memory(plan, bb.model, batch, backbone.device, backbone.dtype, device_room=room, memory=memory.settings)
    return memory


@contextmanager
def on_device(backbone: BackboneHandle, encoder, need, memory: MemorySettings, placed: list):
    """The backbone and the retrieval encoder on the compute device for one run. Load Backbone's: moved by the
    pack (block swap included) after asking ComfyUI for the room; a ComfyUI MODEL: loaded by ComfyUI's model
    management, asked to keep the room the run needs besides the weights (what it did goes to ``placed``)."""
    if backbone.comfy is None:
        with bridge.models_on_device([backbone.backbone.model, encoder], backbone.device, need.needed,
                                     offload=backbone.offload, block_swap=memory.block_swap) as (model, _):
            yield model
        return
    placed.append(bridge.load_managed(backbone.comfy, need.needed - need.weights))
    comfy_model.follow_placement(backbone.backbone.model)
    with bridge.models_on_device([None, encoder], backbone.device, 0, offload=True):
        yield backbone.backbone.model


def server_pool(cfg: SamplingConfig) -> SamplingConfig:
    """``cfg`` with its history pool's disk files in the server's pool folder (``bridge.pool_directory``): where
    files are written is never a workflow's choice. Pool files that killed runs left there are deleted first (a live
    run's never are)."""
    if cfg.retrieval is None:
        return cfg
    directory = bridge.pool_directory()
    swept = sweep_pool_files(directory)
    if swept:
        LOG.info("History Pool: deleted %d pool file(s) that stopped runs left in the pool folder", len(swept))
    pool = replace(cfg.retrieval.pool, directory=directory)
    return replace(cfg, retrieval=replace(cfg.retrieval, pool=pool))


def run_prompts(positive, cfg: SamplingConfig, latent: LatentFormat,
                frames: int) -> tuple[torch.Tensor | PromptSchedule, list]:
    """The run's prompts: a schedule's lines read at the rate of the backbone's ``latent`` format (every line
    must begin before the end; the error names it) and, when that timing differs from what the schedule node
    showed, the timeline as this run uses it (for the info)."""
    if not isinstance(positive, ScheduleInput):
        return positive, []
    prompts = positive.for_run(latent, cfg.has_shots)
    prompts.fire_frames(cfg.frames_per_block, frames, latent)
    if (latent, cfg.frames_per_block) == (positive.latent, positive.frames_per_block):
        return prompts, []
    return prompts, [f"the Prompt Schedule at {latent.fps} fps, blocks of {cfg.frames_per_block} (this backbone):",
                     *prompts.timeline(cfg.frames_per_block, latent)]


def sampler_inputs() -> list:
    """The AR Block Sampler's inputs: the run's size and cache (0 / -1 / auto = the backbone family's), then the
    optional retrieval, noise, start and strategy."""
    return [
        io.MultiType.Input("backbone", types=[BACKBONE, io.Model],
                           tooltip="From Load Backbone, or a MODEL from ComfyUI's loaders (Load Diffusion Model, a "
                                   "GGUF loader; LoRAs with LoraLoaderModelOnly) of a Wan2.1 T2V 1.3B or Wan2.2 TI2V "
                                   "5B; its family decides every setting left at auto."),
        io.MultiType.Input("positive", types=[io.Conditioning, SCHEDULE],
                           tooltip="Prompt from CLIPTextEncode with the Wan umT5 text encoder (CLIPLoader type "
                                   "'wan', umt5_xxl), or a Prompt Schedule (timed prompts: one story; its switch "
                                   "settings apply)."),
        io.Int.Input("width", default=0, min=0, max=MAX_SIDE_PX, step=16,
                     tooltip=f"Video width in px; 0 = the start's, else the backbone's ({fragment('width')}). A "
                             f"multiple of the VAE's stride × the patch ({fragment('size-step')})."),
        io.Int.Input("height", default=0, min=0, max=MAX_SIDE_PX, step=16,
                     tooltip=f"Video height in px; 0 = the start's, else the backbone's ({fragment('height')}). A "
                             f"multiple of the VAE's stride × the patch ({fragment('size-step')})."),
        io.Int.Input("length", default=477, min=1, max=max_video_frames(), step=4,
                     tooltip=f"Video frames at the backbone's rate ({fragment('fps')}). Wan packs "
                             f"{fragment('time-stride')} frames per latent frame plus the first: use "
                             f"{fragment('time-stride')}k+1; latent frames = (length−1)/{fragment('time-stride')}+1, "
                             f"rounded up to whole blocks. Lengths of whole blocks: {fragment('lengths')}."),
        io.Int.Input("seed", default=0, min=0, max=0xFFFFFFFFFFFFFFFF,
                     tooltip="Noise seed; all noise comes from one CPU generator, so a seed gives the same video on "
                             "every device."),
        io.Int.Input("sink_size", display_name="sink", default=-1, min=-1, max=32,
                     tooltip=f"First latent frames kept in the cache forever; -1 = the backbone's "
                             f"({fragment('sink')}). Must match the backbone's training."),
        io.Int.Input("local_attn_size", display_name="window", default=0, min=0, max=MAX_WINDOW,
                     tooltip=f"KV cache window in latent frames; 0 = the backbone's ({fragment('window')})."),
        io.Int.Input("frames_per_block", default=0, min=0, max=16,
                     tooltip=f"Latent frames per block; 0 = the backbone's ({fragment('block')}). Must match "
                             "the backbone's training."),
        io.String.Input("steps", default=AUTO,
                        tooltip=f"auto = the backbone's few-step schedule ({fragment('steps')}); timesteps are "
                                "warped on the shift grid. Otherwise timesteps (Wan 1.3B) or a step count "
                                "(LongLive 2.0)."),
        io.Float.Input("shift", default=0.0, min=0.0, max=20.0, step=0.1,
                       tooltip=f"Flow-matching timestep shift; 0 = the backbone's ({fragment('shift')})."),
        RETRIEVAL.Input("retrieval", optional=True,
                        tooltip="From Retrieve Context. Unconnected = native sliding window."),
        io.Combo.Input("noise_contract", options=list(NOISE_CONTRACTS), default=NOISE_CONTRACTS[0], optional=True,
                       tooltip="per-block: each block's noise depends only on the seed and the block, so a longer run "
                               "begins exactly like a shorter one with the same seed. reference: the published "
                               "code's noise (reproduces its outputs). The same seed gives different videos under "
                               "the two."),
        io.Latent.Input("start", optional=True,
                        tooltip="Optional: the video begins with these frames (kept as given) and continues from "
                                "them. VAE Encode with the backbone's VAE (Wan2.1 VAE; Wan2.2 VAE for LongLive 2.0) "
                                "of an image (1 latent frame) or a clip ((frames-1)/4+1), at this width x height (or "
                                "leave them 0: the start's size), or a previous AR Block Sampler's latent (same seed: "
                                "the longer video that sampler would have made). 'length' is the total, start "
                                "included. LongLive 2.0 holds an image clean inside its first block (its "
                                "image-to-video)."),
        STRATEGY.Input("strategy", optional=True,
                       tooltip="From Context Strategy: ∞-RoPE, MemRoPE, Deep Forcing, rag or native with their "
                               "published window and sink (these replace sink_size and local_attn_size). "
                               "Unconnected = rag if Retrieve Context is connected, else native."),
        SETTINGS.Input("settings", optional=True,
                       tooltip="From Sampler Settings: the sampler kind, context noise, shot settings and guidance "
                               "scale; unconnected = the backbone's."),
        io.Conditioning.Input("negative", optional=True,
                              tooltip="Negative prompt (CLIPTextEncode, Wan text encoder), used when Sampler "
                                      "Settings' guidance_scale is not 1: its own KV cache follows the run's. "
                                      "LongLive 2.0 publishes Wan's negative prompt (see the help page)."),
    ]


def prompt_input(positive, text_dim: int) -> tuple[torch.Tensor | ScheduleInput, SwitchChoice | None]:
    """The sampler's 'positive': a Prompt Schedule (with its switch settings; timed for the run by
    ``run_prompts``) or a CONDITIONING's embeddings."""
    if isinstance(positive, ScheduleInput):
        width = positive.schedule.segments[0].embeds.shape[-1]
        if width != text_dim:
            raise ValueError(f"the Prompt Schedule's prompts are {width} wide but the backbone expects {text_dim}: "
                             "give the schedule node the Wan text encoder (CLIPLoader type 'wan', umt5_xxl)")
        return positive, positive.switch
    return conditioning_embeds(positive, text_dim), None


def conditioning_embeds(positive, text_dim: int, name: str = "positive") -> torch.Tensor:
    """CONDITIONING [[tensor [B, L, D], {...}], ...] → the first entry's embeddings [B, L, D] (float32, CPU);
    ``name``: the sampler input it came from (for messages)."""
    try:
        emb = positive[0][0]
    except (TypeError, IndexError, KeyError):
        raise ValueError(f"{name} must be a CONDITIONING from CLIPTextEncode (Wan umT5 text encoder)") from None
    if not torch.is_tensor(emb) or emb.dim() != 3:
        raise ValueError(f"{name} conditioning holds {type(emb).__name__} {getattr(emb, 'shape', '')}; "
                         "expected embeddings [1, 512, 4096] from the Wan text encoder")
    if emb.shape[-1] != text_dim:
        raise ValueError(f"{name} conditioning is {emb.shape[-1]} wide but the backbone expects {text_dim}: load the "
                         "text encoder with CLIPLoader type 'wan' (umt5_xxl), not a CLIP/T5 of another model")
    return emb.detach().float().cpu()
