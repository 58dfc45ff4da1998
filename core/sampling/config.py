"""The run's settings, built once and passed down unchanged: strategy, sampling, retrieval, history pool.

Every front end (the CLI, the ComfyUI nodes) turns its inputs into a request and asks the run planner
(core/app/plan.py) for the plan; the constructors are the only place the settings are checked, and nothing below
re-derives them.

One name per concept (aliases only at the user's edge, so saved workflows and scripts keep working):
  ``strategy``        the long-context strategy: native, rag, infinity-rope, memrope, deep-forcing
                      (core/context/strategies; CLI ``--strategy``; ``--mode rag|native`` is its older spelling)
  ``top_k``           K, past frames retrieved per block (CLI ``--top-k``; ``--memory-size`` is an alias)
  ``window``          L, KV cache capacity in latent frames (CLI ``--window``, alias ``--local-attn-size``; the
                      sampler node's widget id ``local_attn_size``, shown as "window")
  ``sink``            S, first frames never evicted (CLI ``--sink``, alias ``--sink-size``; widget id ``sink_size``)
  ``recent_exclude``  R, most recently evicted frames never retrieved
  ``switch``          what happens when a prompt schedule switches prompt (``SwitchConfig``)
  ``shots``           multi-shot video: what a cut does (``ShotConfig``)
  ``sampler``         how a block is denoised, by name (core/sampling/samplers): ``renoise`` (x0, then fresh
                      noise at the next step: Self-Forcing, LongLive 1.0) or ``unipc`` (a UniPC solver per
                      block: LongLive 2.0)
  ``steps``           the re-noising sampler's timesteps (core/sampling/timesteps.py ``FlowMatchTimesteps``);
                      a "schedule" is always a prompt schedule (core/sampling/prompts.py)
  ``start``           latent frames the video begins with: ``generate(start=...)``, the sampler node's ``start``
                      input, the CLI's ``--continue-from`` / ``--image`` / ``--video``; their count is ``start``
                      frames wherever a function takes it

What the user asked for is a ``SamplingRequest`` (core/sampling/request.py: every field optional); ``resolve``
turns it, over a backbone family's published settings (``FamilyDefaults``, core/sampling/defaults.py), into the
``SamplingConfig`` below, in which every setting is stated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace as replace_fields
from functools import cached_property
from typing import Sequence

import torch

from ..context.kv_cache import CachePolicy
from ..context.strategies import NAMES as STRATEGIES, get_spec
from ..retrieval.config import POOL_LOCATIONS, POOL_STORAGES, PREFETCH, PoolConfig, RetrievalConfig  # noqa: F401
from .limits import check_steps, check_window
from .noise import NOISE_CONTRACTS
from .samplers import NAMES as SAMPLERS, BlockSampler, get_sampler
from .samplers.renoise import parse_timesteps as parse_steps  # noqa: F401  (the front ends' name)

SWITCH_MODES = ("recache", "none", "flush")
START_BLOCKS = ("short", "clamp")
RETRIEVAL_SCOPES = ("all", "segment")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def default_dtype(device: torch.device) -> torch.dtype:
    """Compute dtype when none is asked for: bfloat16 on CUDA (float16 where bf16 is unsupported), float32 on CPU."""
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32



@dataclass(frozen=True)
class SwitchConfig:
    """What a prompt switch does (a schedule of one prompt never switches; see core/context/recache.py).

    ``mode``: ``recache`` (LongLive: the cached window is re-encoded under the new prompt), ``none``
    (only the cross-attention prompt changes) or ``flush`` (∞-RoPE: the cache is cut to sink + 2 frames;
    a prompt marked as a cut also moves the boundary block's RoPE time). ``global_sink``: a re-cache after the window has filled
    keeps the sink's K/V (LongLive's ``global_sink``). ``retrieval_scope`` (retrieval regime only):
    ``all`` past frames stay retrievable, or only those of the current ``segment`` (generated under
    the current prompt).
    """
    mode: str = "recache"
    global_sink: bool = True
    retrieval_scope: str = "all"

    def __post_init__(self):
        if self.mode not in SWITCH_MODES:
            raise ValueError(f"switch '{self.mode}' is unknown; use one of {SWITCH_MODES}")
        if self.retrieval_scope not in RETRIEVAL_SCOPES:
            raise ValueError(f"retrieval scope '{self.retrieval_scope}' is unknown; use one of {RETRIEVAL_SCOPES}")


@dataclass(frozen=True)
class ShotConfig:
    """Multi-shot video (LongLive 2.0): a prompt-schedule segment marked as a cut begins a new shot.

    ``rope_offset``: each cut moves the temporal RoPE position of the cut block and of every later block
    by this many frames (cached keys keep theirs: a gap between shots; LongLive 2.0: 8; 0 = off).
    ``sink``: the cut block's frames (at most ``sink`` of them) are pinned and slide with the window
    until they sit right behind the sink, where they are kept like it until the next cut (a shot
    sink; LongLive 2.0's ``multi_shot_sink``). The native regime only. ``clean_recache`` (with the shot sink):
    before the cut block's context pass the cache is cleared down to the sink, so the new shot's first block is
    cached after the sink alone and the old shot's frames are forgotten (LongLive 2.0's ``shot_clean_recache``;
    the cut block's own denoising steps still see the old shot).
    """
    rope_offset: float = 0.0
    sink: bool = False
    clean_recache: bool = False

    @property
    def on(self) -> bool:
        """Whether a cut line starts a new shot (a RoPE offset or the multi-shot sink)."""
        return bool(self.rope_offset or self.sink)

    def __post_init__(self):
        if self.rope_offset < 0:
            raise ValueError(f"shot RoPE offset {self.rope_offset} must be ≥ 0 (LongLive 2.0 uses 8)")
        if self.clean_recache and not self.sink:
            raise ValueError("shot_clean_recache clears the cache down to the sink when a new shot's first block "
                             "is pinned behind it; it needs the multi-shot sink (strategy native, --multi-shot-sink): "
                             "turn the sink on or shot_clean_recache off")


@dataclass(frozen=True)
class SamplingConfig:
    """How the AR loop runs: every setting resolved (no None). Build one with ``resolve`` (core/sampling/request.py)
    from what the user asked (``SamplingRequest``) and the backbone family's defaults; this constructor only checks.

    ``strategy``: the long-context strategy by name (core/context/strategies); ``retrieval`` is set for ``rag``
    only. ``strategy_options``: the strategy's own settings, every one stated (name, value). ``request`` and
    ``family`` record where the values came from: ``core.sampling.request.replace(config, **changes)`` re-resolves
    from them, so a changed strategy brings its own window, sink and switch. ``scaled``: what of the strategy's published numbers was
    scaled to this family's blocks (empty when nothing was).
    """
    frames_per_block: int
    window: int
    sink: int
    steps: tuple[int, ...]
    shift: float
    retrieval: RetrievalConfig | None
    switch: SwitchConfig
    strategy: str
    sampler: str        # by name (core/sampling/samplers): "renoise" reads steps / warp_steps, "unipc" sampling_steps
    sampling_steps: int
    shots: ShotConfig
    # a start that is not whole blocks: "short" = its remainder is a shorter first block, replayed; "clamp" =
    # blocks stay whole from frame 0 and the given frames are held clean at timestep 0 while the rest of
    # their block is denoised (LongLive 2.0's independent_first_frame, image-to-video)
    start_block: str
    strategy_options: tuple[tuple[str, float], ...] = ()
    # renoise: the steps of the video's first block (the block at frame 0, when it is generated), empty = ``steps``
    # (frame-wise Causal Forcing++: a 4-step first frame before 2- or 1-step frames; core/families/framewise.py)
    first_steps: tuple[int, ...] = ()
    warp_steps: bool = True
    context_noise: float = 0.0
    noise: str = "per-block"        # core/sampling/noise.py: "per-block" (a longer run begins as the shorter) or "reference" (published)
    # classifier-free guidance: ≠ 1 runs every forward twice, on the prompt and on the negative prompt (each with its
    # own KV cache), and steps with uncond + guidance_scale·(cond − uncond) (LongLive 2.0's guidance_scale)
    guidance_scale: float = 1.0
    scaled: str = field(default="", compare=False)
    request: object = field(default=None, repr=False, compare=False)    # the SamplingRequest it was resolved from
    family: object = field(default=None, repr=False, compare=False)     # the FamilyDefaults it was resolved over

    def __post_init__(self):
        check_window(self.window)                 # the bounds first: nothing below may allocate by their size
        check_steps(len(self.steps), "steps")
        check_steps(self.sampling_steps, "sampling steps")
        self.block_sampler.check(self)
        if self.first_steps:
            check_steps(len(self.first_steps), "first-block steps")
            if self.sampler != "renoise":
                raise ValueError(f"first-block steps {','.join(map(str, self.first_steps))} apply to the renoise "
                                 f"sampler only, not '{self.sampler}'; drop them or use sampler renoise")
        if self.frames_per_block < 1:
            raise ValueError(f"frames per block {self.frames_per_block} must be ≥ 1")
        if self.shift <= 0:
            raise ValueError(f"shift {self.shift} must be > 0")
        if self.noise not in NOISE_CONTRACTS:
            raise ValueError(f"noise contract '{self.noise}' is unknown; use one of {NOISE_CONTRACTS}")
        if self.start_block not in START_BLOCKS:
            raise ValueError(f"start block '{self.start_block}' is unknown; use one of {', '.join(START_BLOCKS)}")
        spec = get_spec(self.strategy)
        if bool(spec.top_k) != (self.retrieval is not None):
            raise ValueError(f"strategy '{self.strategy}' " + ("retrieves: give it a RetrievalConfig" if spec.top_k
                             else "retrieves nothing: retrieval settings apply to strategy 'rag' only; drop them "
                                  "or choose rag"))
        if self.switch.mode not in spec.switches:
            raise ValueError(f"switch '{self.switch.mode}' does not apply to strategy '{self.strategy}'; use one of "
                             f"{', '.join(spec.switches)}" + _SWITCH_WHY.get(self.switch.mode, ""))
        spec.resolve_params(dict(self.strategy_options))      # unknown option names: an error listing the known
        self._check_shot_sink()
        self._check_guidance()
        spec.check(self.policy, self.frames_per_block, self.params)     # the strategy's own needs, named first
        self.policy.check(self.frames_per_block)

    @cached_property
    def policy(self) -> CachePolicy:
        """The cache's policy: window, sink, retrieved frames, and whether keys are stored before RoPE."""
        k = self.retrieval.top_k if self.retrieval is not None else 0
        return CachePolicy(self.window, self.sink, k, relative_rope=get_spec(self.strategy).relative_rope)

    @cached_property
    def params(self):
        """The strategy's own settings as its frozen dataclass (None for a strategy without options)."""
        return get_spec(self.strategy).resolve_params(dict(self.strategy_options))

    def make_strategy(self):
        """A fresh strategy object for one run (its hooks and per-video state; core/context/strategies/base.py)."""
        return get_spec(self.strategy).make(self.params)

    def _check_shot_sink(self) -> None:
        if not self.shots.sink:
            return
        if self.retrieval is not None:
            raise ValueError("the multi-shot sink pins frames in the native sliding window; it cannot be combined "
                             "with retrieval (mode rag): turn it off (--no-multi-shot-sink) or use mode native")
        if self.sink < 1 or self.sink % self.frames_per_block or self.window % self.frames_per_block:
            raise ValueError(f"the multi-shot sink needs a sink ({self.sink}) and a window ({self.window}) that are "
                             f"whole blocks of {self.frames_per_block} frames (LongLive 2.0: sink 8, window 32); "
                             "change them or turn the multi-shot sink off")

    @property
    def guided(self) -> bool:
        """Whether a negative prompt guides the run (a second KV cache, two forwards per step)."""
        return self.guidance_scale != 1.0

    def _check_guidance(self) -> None:
        if not math.isfinite(self.guidance_scale) or self.guidance_scale < 0:
            raise ValueError(f"guidance scale {self.guidance_scale} must be a number ≥ 0 (1 = no guidance; "
                             "LongLive 2.0 trains with 3)")
        if self.guided and self.retrieval is not None:
            raise ValueError(f"guidance scale {self.guidance_scale:g} keeps a second KV cache for the negative prompt, "
                             "which retrieval (strategy rag) has no history pool for: use another strategy (native is "
                             "LongLive 2.0's) or guidance 1")

    @property
    def block_sampler(self) -> BlockSampler:
        """The sampler object that denoises each block (core/sampling/samplers)."""
        return get_sampler(self.sampler)

    @property
    def renoises_per_block(self) -> int:
        """Fresh noise draws per generated block after its initial noise (the sampler's ``noise_draws``)."""
        return self.block_sampler.noise_draws(self)

    @cached_property
    def opening(self) -> "SamplingConfig":
        """The config the video's first block (frame 0) is denoised with: ``steps`` = ``first_steps`` when
        they are set, else this config itself."""
        return replace_fields(self, steps=self.first_steps, first_steps=()) if self.first_steps else self

    @property
    def has_shots(self) -> bool:
        """Whether a cut line starts a new shot (a RoPE offset or the multi-shot sink)."""
        return self.shots.on

    def first_block(self, start: int) -> int:
        """Frames of the shorter first block a start of ``start`` latent frames gives (0: none; "clamp": none)."""
        return start % self.frames_per_block if self.start_block == "short" else 0

    def check_frames(self, num_frames: int, start: int = 0) -> None:
        """Raise unless ``num_frames`` latent frames, of which the first ``start`` are given, are whole
        blocks after the start's remainder (see ``blocks``)."""
        nf, r = self.frames_per_block, self.first_block(start)
        if start < 0 or (start and start >= num_frames):
            raise ValueError(f"frames={num_frames}: the start already holds {start} latent frames; ask for more "
                             f"than that (e.g. {start + nf})")
        if num_frames <= 0 or (num_frames - r) % nf:
            fix = r + max(1, round(max(num_frames - r, 1) / nf)) * nf
            given = f" after a start of {start} frames" if start else ""
            raise ValueError(f"frames={num_frames}: latent frames{given} must be {'a positive multiple' if not r else f'{r} plus a multiple'} "
                             f"of the block size {nf} (e.g. {fix})")

    def blocks(self, num_frames: int, start: int = 0) -> list[tuple[int, int]]:
        """(start frame, frames) of every block. A start whose length is not whole blocks gives a first,
        shorter block of its remainder (an image: one frame), the blocks after it full; with
        ``start_block`` "clamp" every block is full and the given frames are held inside theirs."""
        self.check_frames(num_frames, start)
        r = self.first_block(start)
        return ([(0, r)] if r else []) + [(s, self.frames_per_block) for s in range(r, num_frames, self.frames_per_block)]


_SWITCH_WHY = {"recache": " (a re-cache re-encodes each slot from the frame it holds; this strategy's slots hold "
                          "memory or compressed tokens, not whole frames)",
               "flush": " (the KV flush is infinity-rope's prompt boundary)"}


def check_latent_size(latent_hw: Sequence[int], patch_hw: Sequence[int] = (2, 2)) -> tuple[int, int]:
    """(H, W) of the latent: positive and divisible by the backbone's spatial patch."""
    h, w = (int(x) for x in latent_hw)
    if h <= 0 or w <= 0:
        raise ValueError(f"latent size {h}x{w} must be positive (60x104 is a 480x832 video)")
    if h % patch_hw[0] or w % patch_hw[1]:
        raise ValueError(f"latent size {h}x{w} must be divisible by the patch size {patch_hw[0]}x{patch_hw[1]} "
                         f"(e.g. {h - h % patch_hw[0] or patch_hw[0]}x{w - w % patch_hw[1] or patch_hw[1]})")
    return h, w
