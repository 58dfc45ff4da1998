"""The re-noising few-step sampler (Self-Forcing, LongLive 1.0): at each listed timestep the model's flow
gives x0, which is noised afresh to the next timestep; the last step's x0 is the block's.

Steps are timesteps of the 1000-step training grid (``steps`` 1000,750,500,250), warped onto the shifted
flow-matching schedule (``warp_steps``; core/sampling/timesteps.py). A block draws one fresh noise per step
after the first.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..limits import check_steps, check_steps_text
from ..timesteps import FlowMatchTimesteps
from .base import NoisyBlock, StepSettings


def parse_timesteps(text: str) -> tuple[int, ...]:
    """'1000,750,500,250' → (1000, 750, 500, 250); a clear error for anything else (and beyond the bounds)."""
    check_steps_text(str(text))
    try:
        steps = tuple(int(s) for s in str(text).replace(" ", "").split(",") if s)
    except ValueError:
        raise ValueError(f"steps '{text}' must be comma-separated integers such as 1000,750,500,250") from None
    if not steps:
        raise ValueError("steps must list at least one timestep, e.g. 1000,750,500,250")
    check_steps(len(steps), "steps")
    return steps


@dataclass(frozen=True)
class RenoiseSteps:
    """A run's steps: the schedule (x0 from flow, re-noising) and the timesteps fed to the model [S] float32."""
    schedule: FlowMatchTimesteps
    timesteps: torch.Tensor


class Renoise:
    name = "renoise"
    summary = "x0 then fresh noise at each step (Self-Forcing, LongLive 1.0)"
    steps_help = "the denoising timesteps, e.g. 1000,750,500,250"
    published = {"steps": (1000, 750, 500, 250)}      # Self-Forcing's and LongLive 1.0's four steps

    def check(self, cfg: StepSettings) -> None:
        if not cfg.steps:
            raise ValueError("steps must list at least one timestep, e.g. 1000,750,500,250")

    def noise_draws(self, cfg: StepSettings) -> int:
        return len(cfg.steps) - 1

    def step_list(self, cfg) -> RenoiseSteps:
        """From ``steps``, ``warp_steps`` and ``shift`` of a SamplingConfig."""
        schedule = FlowMatchTimesteps(cfg.shift)
        return RenoiseSteps(schedule, schedule.denoising_timesteps(cfg.steps, cfg.warp_steps))

    def denoise(self, block: NoisyBlock, steps: RenoiseSteps) -> torch.Tensor:
        """x0 [B, F, C, H, W] in the compute dtype; x0 from flow in float64 (FlowMatchTimesteps.x0_from_flow)."""
        schedule, timesteps = steps.schedule, steps.timesteps
        b, f = block.shape
        x = block.noise.to(device=block.device, dtype=block.dtype)
        for i, value in enumerate(timesteps):
            x, t = block.hold(x, block.timestep(value))
            flow = block.flow(x, t)
            x0 = schedule.x0_from_flow(flow.flatten(0, 1), x.flatten(0, 1), t.flatten()).unflatten(0, (b, f))
            x0 = block.hold(x0, t)[0]
            if i + 1 < len(timesteps):
                fresh = block.fresh_noise().to(device=block.device, dtype=block.dtype)
                t_next = torch.full((b * f,), float(timesteps[i + 1]), device=block.device, dtype=torch.float32)
                x = schedule.add_noise(x0.flatten(0, 1), fresh, t_next).unflatten(0, (b, f))
        return x0

    def parse_steps(self, text: str) -> dict:
        """'1000,750,500,250' → {"steps": (1000, 750, 500, 250)}."""
        return {"steps": parse_timesteps(text)}

    def describe(self, settings: StepSettings) -> str:
        first = getattr(settings, "first_steps", ())       # the video's first block's own steps, when set
        return f"steps {','.join(map(str, settings.steps))}" + \
            (f" (the first block {','.join(map(str, first))})" if first else "")
