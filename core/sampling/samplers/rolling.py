"""Rolling Forcing's block sampler (TencentARC/RollingForcing a1477d0, ``pipeline/rolling_forcing_inference.py``;
Causal-Forcing's ``long_video/`` runs the same code with 4 steps).

A rolling window of as many blocks as steps is denoised in ONE model call, each block at its own timestep: the
oldest block at the last step, the newest (fresh noise) at the first. After the call every block but the oldest
is re-noised from its x0 to its next timestep; the oldest leaves the window as its x0 (the prediction at the
last step's timestep) and the next block enters as fresh noise. At the video's start the window fills block by
block; at its end it empties. What the calls attend — the first block as an anchor, clean cached frames and the
window, no mask inside it — is core/context/rolling.py (``make_cache``); after a block leaves, the loop's context
pass writes its clean K/V there.

The loop still goes block by block: ``denoise`` of block b runs the calls that finish it (the first generated
block's fills the window) and keeps the blocks still in flight in the run's step list (``RollingRun``).

Noise: each block in flight has its own stream (core/sampling/noise.py ``stream``): under ``per-block`` its
generator gives its initial noise and one re-noise per step after the first; under ``reference`` each re-noise
is a draw the size of the whole window from the run's generator, of which the block keeps its rows (the
published code's draws, oldest block first).

Not composed (the settings' check refuses them): retrieval and the other strategies (their hooks live in the KV
cache, which this sampler replaces); starts inside a block; guidance (a negative prompt would need a second rolling
cache: no published definition, and the checkpoints are distilled to run without it); prompt schedules (a window
mixes blocks of two prompts in one call: no published definition), refused before the first model call.
A run continued from a start (a partial, a clip) refills the window from its first generated block, as the
reference does with an initial latent: it is not the uninterrupted run's continuation.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ...context.rolling import RollingCache
from ..timesteps import FlowMatchTimesteps
from .base import NoisyBlock, StepSettings
from .renoise import parse_timesteps


@dataclass
class _InFlight:
    """A block in the window: its noisy latents [B, F, C, H, W] (compute dtype), its next step, its re-noise draws."""
    index: int
    start: int
    x: torch.Tensor
    draw: object
    step: int = 0


@dataclass
class RollingRun:
    """A run's steps (as ``renoise``: the warped timesteps [S] float32) and its window of blocks in flight."""
    schedule: FlowMatchTimesteps
    timesteps: torch.Tensor
    window: list[_InFlight] = field(default_factory=list)
    next_block: tuple[int, int] | None = None        # (index, start frame) of the next block to enter


class Rolling:
    name = "rolling"
    summary = "a rolling window of blocks at increasing noise, one joint call each (Rolling Forcing)"
    steps_help = "the denoising timesteps, as many blocks in the window, e.g. 1000,800,600,400,200"
    # Rolling Forcing's configs/rolling_forcing_dmd.yaml; window = the 21 frames every call attends at most
    # (21·1560 tokens in its attention), sink = its anchor, the video's first block
    published = {"steps": (1000, 800, 600, 400, 200), "window": 21, "sink": 3}

    def check(self, cfg) -> None:
        if not cfg.steps:
            raise ValueError("steps must list at least one timestep, e.g. 1000,800,600,400,200")
        if getattr(cfg, "retrieval", None) is not None or getattr(cfg, "strategy", "native") != "native":
            raise ValueError(f"the rolling sampler runs with strategy native only, not '{cfg.strategy}': its window "
                             "attends its own anchor and clean frames (Rolling Forcing's cache), where retrieved "
                             "frames or another strategy's slots have no defined place; choose strategy native "
                             "or sampler renoise")
        if getattr(cfg, "guided", False):
            raise ValueError(f"the rolling sampler runs unguided: guidance scale {cfg.guidance_scale:g} would need a "
                             "second rolling cache for the negative prompt, which no published code defines (Rolling "
                             "Forcing is distilled without guidance); set guidance 1 or use sampler renoise")
        nf, window, sink, n = cfg.frames_per_block, cfg.window, cfg.sink, len(cfg.steps)
        if sink != nf:
            raise ValueError(f"the rolling sampler's anchor is the video's first block: sink {sink} must be the block "
                             f"size {nf} (Rolling Forcing: 3); set sink {nf}")
        if window % nf or window < (n + 1) * nf:
            need = (n + 1) * nf
            raise ValueError(f"the rolling sampler's window {window} must be whole blocks of {nf} and hold the anchor "
                             f"and the {n} blocks denoised together ({need} frames); use a window of at least {need} "
                             "in whole blocks (Rolling Forcing: 21)")

    def noise_draws(self, cfg: StepSettings) -> int:
        return len(cfg.steps) - 1

    def step_list(self, cfg) -> RollingRun:
        """From ``steps``, ``warp_steps`` and ``shift`` of a SamplingConfig (fresh per run: it holds the window)."""
        schedule = FlowMatchTimesteps(cfg.shift)
        return RollingRun(schedule, schedule.denoising_timesteps(cfg.steps, cfg.warp_steps))

    def make_cache(self, cfg, model_cfg, batch: int, latent_hw: tuple[int, int], dtype, device, memory=None):
        """The window's attention context (core/context/rolling.py): anchor = sink frames, window = cfg.window."""
        if memory is not None and memory.kv == "fp8":
            raise ValueError("the rolling sampler keeps its K/V in the compute dtype: fp8 K/V storage (--kv fp8) is "
                             "not available with it; use --kv exact or auto")
        p = model_cfg.patch_size
        return RollingCache(model_cfg.num_layers, batch, (latent_hw[0] // p[1], latent_hw[1] // p[2]),
                            model_cfg.num_heads, model_cfg.head_dim, dtype, device, cfg.window, cfg.sink)

    def memory_frames(self, cfg) -> tuple[int, int]:
        """(frames the cache holds, frames one call runs): anchor + window, and the window's blocks."""
        return cfg.window + cfg.sink, len(cfg.steps) * cfg.frames_per_block

    def denoise(self, block: NoisyBlock, steps: RollingRun) -> torch.Tensor:
        """The block's x0 [B, F, C, H, W] in the compute dtype: the joint calls until it leaves the window."""
        if block.clean is not None:
            raise ValueError("the rolling sampler denoises whole blocks: a start that ends inside a block is not "
                             "available with it; trim the start to whole blocks")
        if not steps.window:              # the first generated block: the window starts filling here
            if len(block.run.fires) > 1:
                raise ValueError(f"the rolling sampler takes one prompt; this prompt schedule has {len(block.run.fires)} "
                                 "(its window denoises blocks of two prompts in one call, and no published code says "
                                 "how they meet): use one prompt, or sampler renoise for a schedule")
            steps.next_block = (block.index, block.start)
        if steps.window and steps.window[0].index != block.index:
            raise RuntimeError(f"rolling window holds block {steps.window[0].index}, asked for block {block.index}")
        while True:
            done = self._call(block, steps)
            if done is not None:
                return done

    def _call(self, block: NoisyBlock, run: RollingRun) -> torch.Tensor | None:
        """One joint call: a new block enters when there is room; every block advances one step; the oldest
        leaves after its last step (its x0 is returned, else None)."""
        loop, (b, f) = block.run, block.shape
        total = loop.output.shape[1]
        if len(run.window) < len(run.timesteps) and run.next_block[1] < total:
            index, start = run.next_block
            noise, draw = loop.noise.stream(index, start, f)
            run.window.append(_InFlight(index, start, noise.to(device=block.device, dtype=block.dtype), draw))
            run.next_block = (index + 1, start + f)
        first, n = run.window[0].start, len(run.window) * f
        values = [float(run.timesteps[w.step]) for w in run.window]
        x = torch.cat([w.x for w in run.window], 1)
        t = torch.cat([torch.full((b, f), v, device=block.device, dtype=torch.float32) for v in values], 1)
        with loop.cache.window_call(first, n, values):
            flow = block.flow(x, t)
        x0 = run.schedule.x0_from_flow(flow.flatten(0, 1), x.flatten(0, 1), t.flatten()).unflatten(0, (b, n))
        done = None
        for i, w in enumerate(list(run.window)):
            x0_i = x0[:, i * f:(i + 1) * f]
            if w.step == len(run.timesteps) - 1:
                done = x0_i
                continue
            fresh = w.draw(n, i * f).to(device=block.device, dtype=block.dtype)
            t_next = torch.full((b * f,), float(run.timesteps[w.step + 1]), device=block.device, dtype=torch.float32)
            w.x, w.step = run.schedule.add_noise(x0_i.flatten(0, 1), fresh, t_next).unflatten(0, (b, f)), w.step + 1
        if done is not None:
            run.window.pop(0)
        return done

    def parse_steps(self, text: str) -> dict:
        """'1000,800,600,400,200' → {"steps": (1000, 800, 600, 400, 200)}."""
        return {"steps": parse_timesteps(text)}

    def describe(self, settings: StepSettings) -> str:
        return f"rolling window of {len(settings.steps)} blocks, steps {','.join(map(str, settings.steps))}"
