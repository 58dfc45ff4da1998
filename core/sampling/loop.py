"""The AR block loop: retrieval (optional) → denoising steps → descriptors → context pass, per block.

Denoising is the run's block sampler (``SamplingConfig.block_sampler``, core/sampling/samplers): the loop
hands it each generated block's noise and the model call (a ``NoisyBlock``) and keeps the x0 it returns.
The model is anything with the backbone interface (``BackboneModel``, core/model/backbone.py). Shots (a prompt-schedule segment marked as a cut): the temporal RoPE offset grows, the
cut block is conditioned on the segment's ``cut_embeds`` and, with a shot sink, pinned in the cache (with
``shots.clean_recache`` the cache is first cleared down to the sink). Guidance (``guidance_scale`` ≠ 1): the
negative prompt's own cache follows every step of the run's (core/sampling/guidance.py).

Reproducibility: all noise comes from CPU generators seeded from the user's seed (core/sampling/noise.py), cast
to the compute dtype and moved to the device after drawing. Same seed, same video on any device.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ..files.memory_trace import HOST, allocating, host_device, label
from .budget import LATENT_COPIES, run_bytes
from .config import SamplingConfig, check_latent_size
from ..retrieval.encoder import RetrievalEncoder
from ..retrieval.pool import HistoryPool
from ..context.kv_cache import KVCache
from ..latents.format import format_for_channels
from ..model.backbone import BackboneModel, TextContext, compute_place
from .memory import AUTO, EXACT, MemorySettings
from .noise import NoiseSource, initial_noise  # noqa: F401  (initial_noise: the reference contract's first draw)
from .samplers import NoisyBlock
from ..retrieval.prefetch import Prefetcher
from .prompts import PromptSchedule, as_schedule
from ..context.recache import recache
from ..retrieval.select import RetrievalChoice, idle_note, log_record, make_describer, select_frames
from .guidance import NegativeBranch
from .recompute import recompute_kv


@dataclass
class BlockUpdate:
    """Sent to the callback after each block: x0 [B, F, C, H, W] in model space."""
    block: int
    num_blocks: int
    start_frame: int
    x0: torch.Tensor
    retrieval: dict | None
    timing: dict
    replayed: bool = False                # a given (start) block, not generated


@dataclass
class GenerationResult:
    latents: torch.Tensor                 # [B, C, T, H, W] model-normalised, float32, CPU
    retrieval_log: list[dict] = field(default_factory=list)
    descriptors: torch.Tensor | None = None   # [B, T, D] float32
    timings: list[dict] = field(default_factory=list)
    pool_bytes_per_frame: int = 0
    pool_peak_bytes: int = 0
    pool_usage: dict = field(default_factory=dict)   # bytes/frames per tier at the end of the run
    peak_memory_mb: float = 0.0               # CUDA: max allocated; CPU: process peak RSS
    cache_bytes: int = 0                      # the attention cache's tensors at the end (KV, context buffers, …)
    switches: list[dict] = field(default_factory=list)   # one record per prompt switch (_BlockLoop.switch)
    notes: list[str] = field(default_factory=list)      # what the user should hear once (e.g. retrieval found nothing)


def check_start(start: torch.Tensor, batch: int, channels: int, latent_hw: tuple[int, int]) -> torch.Tensor:
    """A start [B, C, P, H, W] in the model's latent space, checked against the run → float32 CPU."""
    if start.dim() != 5:
        raise ValueError(f"start latents have shape {list(start.shape)}; expected [B, C, frames, H, W]")
    b, c, _, h, w = start.shape
    mine, theirs = format_for_channels(channels), format_for_channels(c)
    if c != channels:
        made = f" ({theirs.name} latents, made by {theirs.vae})" if theirs is not None else ""
        wants = f"{mine.name} latents: encode the start with {mine.vae}" if mine is not None else "them"
        raise ValueError(f"start latents have {c} channels{made}; this backbone takes {channels}-channel {wants}")
    if (h, w) != tuple(latent_hw):
        stride = mine.stride if mine is not None else 8
        raise ValueError(f"start latents are {h}x{w}; the run is {latent_hw[0]}x{latent_hw[1]} "
                         f"(set the size to the start's: {w * stride}x{h * stride} px, latent {h}x{w})")
    if b != batch:
        raise ValueError(f"start latents hold {b} videos; the run has {batch} prompts")
    return start.detach().to(device=host_device(), dtype=torch.float32)


def tensor_bytes(obj) -> int:
    """Bytes of every tensor an object holds in its attributes (directly or in lists/tuples/dicts), each
    storage counted once: what the attention cache keeps, whatever its strategy stores."""
    seen, total = set(), 0
    stack = list(vars(obj).values())
    while stack:
        x = stack.pop()
        if isinstance(x, torch.Tensor):
            key = (x.untyped_storage().data_ptr(), x.device)
            if key not in seen:
                seen.add(key)
                total += x.untyped_storage().nbytes()
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, dict):
            stack.extend(x.values())
    return total


def check_encoder(encoder: RetrievalEncoder | None, channels: int) -> None:
    """A retrieval encoder must be trained on latents of the backbone's kind (16 Wan2.1 / 48 Wan2.2 channels)."""
    if encoder is None or encoder.cfg.in_channels == channels:
        return
    theirs, mine = format_for_channels(encoder.cfg.in_channels), format_for_channels(channels)
    kind = lambda f, c: f"{c}-channel {f.name} latents" if f is not None else f"{c}-channel latents"   # noqa: E731
    raise ValueError(f"the retrieval encoder was trained on {kind(theirs, encoder.cfg.in_channels)}; this backbone "
                     f"makes {kind(mine, channels)}: train one for it (python -m core build-corpus with this "
                     "backbone, then train-encoder) or use avg_pool descriptors")


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


class _Clock:
    """Per-block phase times; synchronises CUDA only when timings were asked for."""

    def __init__(self, device: torch.device, detailed: bool):
        self.device, self.detailed = device, detailed
        self.marks: list[float] = []

    def mark(self) -> None:
        if self.detailed and self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.marks.append(time.perf_counter())

    def timing(self, block: int) -> dict:
        m, self.marks = self.marks, []
        out = {"block": block, "total_s": m[-1] - m[0]}
        if self.detailed:
            out.update(retrieval_s=m[1] - m[0], denoise_s=m[2] - m[1], context_s=m[3] - m[2])
        return out


class _BlockLoop:
    """The state of one run (cache, pool, noise, descriptors) and its per-block steps."""

    def __init__(self, model: BackboneModel, prompt_embeds: torch.Tensor | PromptSchedule, num_frames: int,
                 latent_hw: tuple[int, int], seed: int, cfg: SamplingConfig, encoder: RetrievalEncoder | None,
                 memory: MemorySettings):
        self.model, self.cfg = model, cfg
        self.cancel: Callable[[], None] = lambda: None      # before every model call: raise to stop
        self.device, self.dtype = compute_place(model)
        self.prompts = as_schedule(prompt_embeds)
        if cfg.guided and self.prompts.negative is None:
            raise ValueError(f"guidance scale {cfg.guidance_scale:g} needs a negative prompt: pass a PromptSchedule "
                             "with negative= (CLI --negative-prompt, or 'negative_prompt_embeds' in --embeds; the "
                             "sampler's negative input), or set guidance 1")
        self.b, self.c = self.prompts.batch, model.cfg.in_dim
        self.hw = latent_hw
        self.fires = self.prompts.fire_frames(cfg.frames_per_block, num_frames)   # block start of each segment
        self.segment, self.switches = 0, []
        self.shot, self.cut_block = 0, False      # cuts so far; whether the current block begins a shot
        self.sampler = cfg.block_sampler
        self.steps = self.sampler.step_list(cfg)       # (rolling: one object that holds the blocks in flight)
        self.first_steps = self.sampler.step_list(cfg.opening) if cfg.first_steps else self.steps
        self.noise = NoiseSource(cfg.noise, seed, (self.b, self.c, num_frames, *latent_hw), cfg.renoises_per_block + 1,
                                 cfg.opening.renoises_per_block + 1)
        self.text = self._encode(0)
        with allocating(HOST):
            self.output = torch.zeros(self.b, num_frames, self.c, *latent_hw, dtype=torch.float32, device=host_device())
        self.describe = make_describer(encoder)
        self.descriptors: torch.Tensor | None = None                    # [B, T, D]
        self.pool = self._make_pool()
        self.pool_seen, self.idle = 0, []       # retrieval: the pool the last choice saw; blocks that got nothing
        self.lazy = memory.context == "shared"   # retrieved frames decoded layer by layer: none held whole
        self.prefetcher = None
        if self.pool is not None and cfg.retrieval.prefetches(self.device):
            self.prefetcher = Prefetcher(self.pool, self.device, self.dtype, lazy=self.lazy)
        self.cache = self._make_cache(memory, self._evict if self.pool is not None else None)
        self.negative = None            # guidance: the negative prompt's text and cache
        if cfg.guided:
            neg = self.prompts.negative.to(device=self.device, dtype=self.dtype)
            self.negative = NegativeBranch(model, neg, self.b, self._make_cache(memory), cfg.guidance_scale)

    def _make_cache(self, memory: MemorySettings, on_evict=None):
        m, p, hw = self.model.cfg, self.model.cfg.patch_size, self.hw
        own = getattr(self.sampler, "make_cache", None)       # rolling: its own attention context
        if own is not None:
            return own(self.cfg, m, self.b, hw, self.dtype, self.device, memory)
        return KVCache(self.cfg.policy, m.num_layers, self.b, (hw[0] // p[1], hw[1] // p[2]), m.num_heads, m.head_dim,
                       self.dtype, self.device, on_evict, strategy=self.cfg.make_strategy(), context=memory.context,
                       kv="exact" if memory.kv == AUTO else memory.kv)

    def _encode(self, segment: int, cut: bool = False) -> TextContext:
        seg = self.prompts.segments[segment]
        embeds = seg.cut_embeds if cut and seg.cut_embeds is not None else seg.embeds
        text = self.model.encode_text(embeds.to(device=self.device, dtype=self.dtype))
        label("text", *(t for kv in text.kv for t in kv))
        return text

    def switch(self, start: int) -> None:
        """Before the block at ``start``: when a segment begins there, its prompt replaces the current one
        and, with switch ``recache``, the cached window is re-encoded under it (core/context/recache.py); with
        ``flush`` the strategy flushes the cache (∞-RoPE; a segment marked as a cut also cuts RoPE time). A cut
        on a family with shots (LongLive 2.0) moves the RoPE offset of this and every later block and
        conditions this block on ``cut_embeds``."""
        if self.cut_block:          # the shot's first block is done: the rest of the shot has the prompt itself
            self.cut_block = False
            if self.prompts.segments[self.segment].cut_embeds is not None:
                self.text = self._encode(self.segment)
        if self.segment + 1 >= len(self.fires) or self.fires[self.segment + 1] != start:
            return
        self.segment += 1
        cut = self.prompts.segments[self.segment].cut
        if cut:
            self.shot, self.cut_block = self.shot + 1, True
            self.cache.rope_offset = self.shot * self.cfg.shots.rope_offset
        self.text = self._encode(self.segment, cut)
        sw = self.cfg.switch
        plan, flush = None, None
        seg = self.prompts.segments[self.segment]
        if sw.mode == "recache":
            self.cancel()
            plan = recache(self.model, self.cache, self.text, self.output, start, sw.global_sink, self.cfg.context_noise)
        elif sw.mode == "flush":
            flush = self.cache.strategy.flush(self.cache, seg.cut)
        if self.negative is not None:
            self.negative.switch(sw.mode, seg.cut, self.cache.rope_offset, self.output, start, sw.global_sink,
                                 self.cfg.context_noise)
        self.switches.append({"segment": self.segment, "asked_frame": seg.start, "block_start": start,
                              "label": seg.label, "cut": seg.cut, "recache": plan.record() if plan is not None else None,
                              "flush": flush, **({"rope_offset": self.cache.rope_offset} if cut else {})})

    def retrievable_from(self, start: int) -> int:
        """The first global frame the block at ``start`` may retrieve: 0, or with retrieval scope ``segment``
        the first frame of its prompt's segment (known ahead: the schedule fixes every switch block)."""
        if self.cfg.switch.retrieval_scope != "segment":
            return 0
        return max(f for f in self.fires if f <= start)

    def _make_pool(self) -> HistoryPool | None:
        """The history pool (retrieval only); an ``auto`` budget leaves the rest of the run its memory: the
        latents' other copies (and on a CPU the cache and the forward) in RAM, the cache and the forward on a GPU."""
        if self.cfg.retrieval is None:
            return None
        need = run_bytes(self.model, self.cfg, self.hw, self.output.shape[1], self.b, self.dtype)
        host = (LATENT_COPIES - 1) * need.latents + (need.working if self.device.type == "cpu" else 0)
        return HistoryPool(self.cfg.retrieval.pool, self.device, reserved={"host": host, "device": need.working},
                           recompute=lambda lat: recompute_kv(self.model, self.text, lat, self.cfg.context_noise))

    def _evict(self, frame: int, ks: list[torch.Tensor], vs: list[torch.Tensor]) -> None:
        self.pool.append(ks, vs, latent=self.output[:, frame].to(self.dtype))   # lossless: x0 was in dtype

    def _flow(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x [B, F, C, H, W] at timesteps t [B, F] → the model's flow, same layout."""
        self.cancel()
        x = x.permute(0, 2, 1, 3, 4)
        flow = self.model(x, t, self.text, self.cache)
        if self.negative is not None:
            flow = self.negative.mix(x, t, flow)
        return flow.permute(0, 2, 1, 3, 4)

    def _timestep(self, value: float, frames: int) -> torch.Tensor:
        return torch.full((self.b, frames), float(value), device=self.device, dtype=torch.float32)

    def retrieve(self, start: int, frames: int) -> RetrievalChoice | None:
        """Make room for the block and, in the retrieval regime, attach its retrieved frames (read
        ahead by ``prefetch``, or chosen and read now). The choice sees the pool as it is before the
        block's start evicts: the frames that start evicts are never among them."""
        ahead = self.prefetcher.take(start) if self.prefetcher is not None else None
        choice = ahead[0] if ahead is not None else None
        r = self.cfg.retrieval
        self.pool_seen = len(self.pool) if self.pool is not None else 0      # the pool the choice sees
        if ahead is None and r is not None and self.descriptors is not None:
            choice = select_frames(self.descriptors, start, len(self.pool), self.cfg.sink, r.recent_exclude, r.top_k,
                                   first_frame=self.retrievable_from(start))
        if choice is not None and choice.num_evicted != len(self.pool):
            raise RuntimeError(f"retrieval for frame {start} was chosen from {choice.num_evicted} pool frames; "
                               f"the pool holds {len(self.pool)}")
        for cache in [self.cache] + ([self.negative.cache] if self.negative is not None else []):
            cache.begin_block(start, frames)
        if ahead is not None:
            self.cache.set_retrieved(ahead[1], ahead[2])
        elif choice is not None:
            self.cache.set_retrieved(*self.pool.gather(choice.pool_indices, self.device, self.dtype, lazy=self.lazy))
        return choice

    def prefetch(self, start: int) -> None:
        """Choose the frames of the block starting at ``start`` now (its query, this block's last
        descriptor, exists; the pool changes only at that block's start) and start reading them."""
        r = self.cfg.retrieval
        if self.prefetcher is None or self.descriptors is None:
            return
        choice = select_frames(self.descriptors, start, len(self.pool), self.cfg.sink, r.recent_exclude, r.top_k,
                               first_frame=self.retrievable_from(start))
        if choice is not None:
            self.prefetcher.start(start, choice)

    def denoise(self, block: int, start: int, frames: int, given: int = 0) -> torch.Tensor:
        """The block's denoising steps (the run's sampler) → x0 [B, F, C, H, W] in the compute dtype. Its first
        ``given`` frames are the start's, held clean at timestep 0 throughout (``start_block`` "clamp":
        image-to-video)."""
        clean = self.output[:, start:start + given].to(self.device) if given else None
        noisy = NoisyBlock(self.noise.block_noise(block, start, frames), self._flow,
                           lambda: self.noise.renoise(frames), clean, self.device, self.dtype, block, start, self)
        return self.sampler.denoise(noisy, self.first_steps if start == 0 else self.steps)

    def end_block(self) -> None:
        """After the context pass: a shot's first block becomes the shot sink (``shots.sink``)."""
        if self.cut_block and self.cfg.shots.sink:
            self.cache.pin(self.cfg.sink)
            if self.negative is not None:
                self.negative.cache.pin(self.cfg.sink)

    def replay(self, block: int, start: int, frames: int) -> torch.Tensor:
        """A given block (the start of the video): its clean latents as x0, in the compute dtype."""
        self.noise.skip_block(block, start, frames)
        return self.output[:, start:start + frames].to(device=self.device, dtype=self.dtype)

    def commit(self, start: int, x0: torch.Tensor) -> None:
        """Keep the block's x0 and its frames' descriptors, then write its clean K/V (context pass)."""
        frames = x0.shape[1]
        self.output[:, start:start + frames] = x0.float().to(host_device())
        desc = self.describe(x0.flatten(0, 1)).float().unflatten(0, (self.b, frames))
        if self.descriptors is None:
            self.descriptors = torch.zeros(self.b, self.output.shape[1], desc.shape[-1], dtype=torch.float32,
                                           device=desc.device)
        self.descriptors[:, start:start + frames] = desc

    def context_pass(self, x0: torch.Tensor) -> None:
        """The block's clean K/V into the cache (the last layer's output and the head are skipped, unless the
        strategy reads the block's queries at every layer: Deep Forcing scores history with them)."""
        x, t = x0.permute(0, 2, 1, 3, 4), self._timestep(self.cfg.context_noise, x0.shape[1])
        if self.cut_block and self.cfg.shots.clean_recache:     # a new shot forgets the old one (the sink stays)
            for cache in [self.cache] + ([self.negative.cache] if self.negative is not None else []):
                cache.clear_to_sink()
        self.cancel()
        if self.cache.strategy.observes_queries:
            self.model(x, t, self.text, self.cache)
        else:
            self.model.write_cache(x, t, self.text, self.cache)
        if self.negative is not None:
            self.cancel()
            self.negative.context_pass(x, t)

    def report(self, result: GenerationResult, blocks: int) -> None:
        """The run's figures into ``result``: the pool's use, the cache's bytes and, once, the blocks that
        retrieved nothing when frames were to be expected (``idle``: (block, pool frames seen) per such block)."""
        if self.pool is not None:
            result.pool_bytes_per_frame, result.pool_peak_bytes = self.pool.bytes_per_frame, self.pool.peak_bytes
            result.pool_usage = self.pool.usage()
            segment = self.cfg.switch.retrieval_scope == "segment"
            note = idle_note(self.idle, blocks, self.cfg.retrieval.recent_exclude, segment)
            result.notes += [note] if note else []
        result.cache_bytes = tensor_bytes(self.cache) + (tensor_bytes(self.negative.cache) if self.negative else 0)

    def close(self) -> None:
        if self.prefetcher is not None:
            self.prefetcher.close()
        if self.pool is not None:
            self.pool.close()


@torch.no_grad()
def generate(model: BackboneModel, prompt_embeds: torch.Tensor | PromptSchedule, num_frames: int, latent_hw: tuple[int, int],
             seed: int, config: SamplingConfig | None = None, encoder: RetrievalEncoder | None = None,
             callback: Callable[[BlockUpdate], None] | None = None, timings: bool = False,
             start: torch.Tensor | None = None, prefix: torch.Tensor | None = None,
             cancel: Callable[[], None] | None = None, memory: MemorySettings | None = None) -> GenerationResult:
    """Generate ``num_frames`` latent frames of ``latent_hw`` for each prompt.

    prompt_embeds [B, L, text_dim], or a PromptSchedule (core/sampling/prompts.py: prompts that change over time;
    ``config.switch`` says what a switch does; one entry = a single prompt). ``model``: any backbone with the
    interface of core/model/backbone.py (``WanTransformer``); its parameters decide device and compute dtype. The
    history pool is built from ``config.retrieval.pool``, used and closed here; its figures are in
    the result. Returns latents [B, C, T, H, W] (C = the model's channels: 16 Wan2.1, 48 Wan2.2) in the
    model's normalised space. ``callback`` runs after every block, ``cancel`` before every model call (a denoising step, the context pass, a re-cache): raise
    from either to stop (the partial state is dropped). ``timings``: per-phase times (synchronises CUDA at each
    phase; off, only each block's total is measured). ``result.notes``: lines to tell the user once.

    ``start`` [B, C, P, H, W] (model space): the video's first P frames, given (``prefix`` is its former name). Their blocks are
    replayed — retrieval, descriptors and context pass as if generated, no denoising — and the rest is
    generated (``SamplingConfig.blocks``: a P that is not whole blocks makes a shorter first block, or with
    ``start_block`` "clamp" stays inside a whole block and is held clean while the rest of it is denoised).
    For latents this engine made, the replayed state and retrieval log are those of the original run.
    ``memory``: core/sampling/memory.py (default ``EXACT``: the published codes'; core/app/plan.py resolves ``auto``).
    """
    if config is None:
        raise ValueError("generate needs the run's SamplingConfig: core.sampling_config(backbone.defaults, ...) or "
                         "core.plan_run(...).config")
    cfg = config
    if prefix is not None:
        if start is not None:
            raise ValueError("give the start once: start= (prefix= is its former name)")
        start = prefix
    check_encoder(encoder, model.cfg.in_dim)
    given = start.shape[2] if start is not None else 0
    blocks = cfg.blocks(num_frames, given)
    latent_hw = check_latent_size(latent_hw, model.cfg.patch_size[1:])
    loop = _BlockLoop(model, prompt_embeds, num_frames, latent_hw, seed, cfg, encoder, memory or EXACT)
    if cancel is not None:
        loop.cancel = cancel
    if cfg.shots.sink and blocks[0][1] != cfg.frames_per_block:
        raise ValueError(f"the multi-shot sink needs whole blocks from frame 0; a start of {given} frames makes a "
                         f"first block of {blocks[0][1]}: trim the start to whole blocks of {cfg.frames_per_block}")
    if cfg.first_block(given) and len(loop.fires) > 1:
        raise ValueError(f"a start of {given} latent frames (not whole blocks of {cfg.frames_per_block}) cannot be "
                         "combined with a prompt schedule yet; trim the start to whole blocks or use one prompt")
    if start is not None:
        loop.output[:, :given] = check_start(start, loop.b, loop.c, latent_hw).permute(0, 2, 1, 3, 4)
    result = GenerationResult(loop.output)
    clock = _Clock(loop.device, timings)
    try:
        for blk, (first, frames) in enumerate(blocks):
            clock.mark()
            loop.switch(first)
            choice = loop.retrieve(first, frames)
            if choice is None and loop.pool is not None:
                loop.idle.append((blk, loop.pool_seen))
            clock.mark()
            x0 = loop.replay(blk, first, frames) if first + frames <= given else \
                loop.denoise(blk, first, frames, max(given - first, 0))
            clock.mark()
            loop.commit(first, x0)
            if blk + 1 < len(blocks):
                loop.prefetch(blocks[blk + 1][0])
            loop.context_pass(x0)
            loop.end_block()
            clock.mark()
            record = log_record(blk, first, choice, cfg.sink, loop.segment) if choice is not None else None
            if record is not None:
                result.retrieval_log.append(record)
            timing = clock.timing(blk)
            result.timings.append(timing)
            if callback is not None:
                callback(BlockUpdate(blk, len(blocks), first, x0, record, timing, replayed=first + frames <= given))
        loop.report(result, len(blocks))
    finally:
        loop.close()
    result.latents = loop.output.permute(0, 2, 1, 3, 4).contiguous()
    result.descriptors = loop.descriptors.to(host_device()) if loop.descriptors is not None else None
    result.peak_memory_mb = peak_memory_mb(loop.device)
    result.switches = loop.switches
    return result
