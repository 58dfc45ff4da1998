"""The real-size dry run: the whole block loop at a real size on the meta device, every allocation counted.

``trace_run`` runs ``generate`` (core/sampling/loop.py: the cache, the strategy, the history pool, the prefetch,
the re-cache of a prompt switch) under a ``MemoryTrace`` (core/files/memory_trace.py) and returns the peak bytes
on the compute device and what held them. ``dry=True`` moves nothing real: the model and every tensor live on the
meta device (a 5B model at 720p costs seconds and no memory); ``dry=False`` runs the same on real tensors (the
validation: both must agree, ``benchmarks/vram.py``).

A dry run takes ``DRY_STEPS`` denoising steps per block and ``default_frames`` frames: enough to reach the
steady state, where every later block allocates the same.

Stand-ins where a step needs values the meta device does not have (each is the same size as the real choice):
  * retrieval picks the newest eligible pool frames (core/retrieval/select.py);
  * the prompt keeps all its rows (core/model/transformer.py merge_padding; a real prompt's padding is merged:
    ``text_rows`` sets how many rows to assume, default the model's text length, the most);
  * a guided run's negative prompt is one more random prompt of the same rows;
  * attention allocates what a fused kernel does (core/model/attention.py), not torch's decomposition.
The history pool keeps every frame in its RAM tier (unlimited; on the meta device), since where frames go in RAM
or on disk does not change the device's peak; a pool on the ``device`` tier keeps its configured budget.
Retrieval reads ahead (prefetch on), as on CUDA.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass

import torch

from ..files.memory_trace import HOST, KINDS, MemoryTrace, host_on
from ..model.backbone import BackboneModel
from ..model.block_swap import swap_blocks
from ..sampling.config import SamplingConfig
from ..sampling.loop import generate
from ..sampling.memory import EXACT, MemorySettings
from ..sampling.prompts import PromptSchedule, Segment, as_schedule

DRY_STEPS = 2       # a block's denoising steps are the same forward over the same cache: two show what all hold
#                     (a multistep solver's history included: UniPC keeps two model outputs)


@dataclass(frozen=True)
class Traced:
    """Peak device bytes of one traced run and what was live at that moment (bytes by kind)."""
    peak: int
    at_peak: dict
    host_peak: int          # RAM-side tensors (the latents, the pool's RAM tier) at their peak
    blocks: int
    seconds: float

    def kinds(self) -> list[tuple[str, int]]:
        """(kind, bytes) in a fixed order, the kinds present at the peak."""
        return [(k, self.at_peak[k]) for k in KINDS if self.at_peak.get(k)]


def trace_config(cfg: SamplingConfig, device: torch.device, dry: bool = True) -> SamplingConfig:
    """The run's config as the trace runs it: the pool's RAM tier unlimited, reading ahead (retrieval runs); a
    dry run takes ``DRY_STEPS`` denoising steps per block."""
    if dry:
        cfg = dataclasses.replace(cfg, steps=cfg.steps[:DRY_STEPS], sampling_steps=min(cfg.sampling_steps, DRY_STEPS))
    r = cfg.retrieval
    if r is None:
        return cfg
    pool = r.pool
    if pool.location != "device":
        pool = dataclasses.replace(pool, location="host", budget_mb=None)
    return dataclasses.replace(cfg, retrieval=dataclasses.replace(r, pool=pool, prefetch="on"))


def default_frames(cfg: SamplingConfig) -> int:
    """Latent frames enough to reach the steady peak: the window filled, then two blocks evicting (and, with
    retrieval, two blocks after the pool first holds ``top_k`` frames it may retrieve)."""
    n, extra = cfg.frames_per_block, 0
    if cfg.retrieval is not None:
        extra = cfg.retrieval.recent_exclude + cfg.retrieval.top_k
    return (-(-(cfg.window + extra) // n) + 2) * n


def _prompts(model: BackboneModel, batch: int, rows: int, device: torch.device, dtype: torch.dtype,
             switch_at: int | None, dry: bool, guided: bool = False) -> torch.Tensor | PromptSchedule:
    g = torch.Generator().manual_seed(0)

    def one():
        if dry:
            return torch.empty(batch, rows, model.cfg.text_dim, device="meta", dtype=dtype)
        return torch.randn(batch, rows, model.cfg.text_dim, generator=g).to(device=device, dtype=dtype)
    prompts = one() if switch_at is None else PromptSchedule([Segment(0, one(), "first"), Segment(switch_at, one(), "second")])
    return as_schedule(prompts, one()) if guided else prompts


def trace_run(model: BackboneModel, cfg: SamplingConfig, latent_hw: tuple[int, int], frames: int | None = None, *,
              batch: int = 1, dtype: torch.dtype | None = None, dry: bool = True, text_rows: int | None = None,
              switch_at: int | None = None, memory: MemorySettings = EXACT) -> Traced:
    """Run ``generate`` traced (see the module's docstring). ``model``: any backbone (a dry run uses a meta copy
    of it in ``dtype``, default its own; a real run uses it as it is). ``switch_at``: a second prompt from this
    latent frame on (the switch's re-cache or flush is traced too)."""
    frames = frames if frames is not None else default_frames(cfg)
    param = next(model.parameters())
    dtype = dtype or param.dtype
    if dry:
        if not param.is_meta or param.dtype != dtype:
            model = copy.deepcopy(model).to(device="meta", dtype=dtype) if not param.is_meta else model.to(dtype)
        device = torch.device("meta")
    else:
        device = param.device
    rows = text_rows or getattr(model.cfg, "text_len", 512)
    prompts = _prompts(model, batch, rows, device, dtype, switch_at, dry, cfg.guided)
    trace = MemoryTrace(device)
    begin = time.perf_counter()
    with host_on("meta" if dry else "cpu"), trace:
        swap = swap_blocks(model, memory.block_swap, device) if memory.block_swap else None
        trace.add("weights", [*model.parameters(), *model.buffers()])
        try:
            result = generate(model, prompts, frames, latent_hw, seed=0, config=trace_config(cfg, device, dry),
                              memory=memory)
        finally:
            if swap is not None:
                swap.undo()
    return Traced(trace.peak, dict(trace.at_peak.by_kind), trace.host_peak, len(result.timings),
                  time.perf_counter() - begin)
