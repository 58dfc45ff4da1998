"""LongLive 2.0's block sampler: a fresh UniPC solver per block (the solver's arithmetic:
core/sampling/unipc.py), no re-noising. ``sampling_steps`` solver steps at ``shift``; the state is kept
in float32 whatever the compute dtype, the model is fed the solver's integer timesteps.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..limits import check_steps, check_steps_text
from ..unipc import UniPCSolver
from .base import NoisyBlock, StepSettings


@dataclass(frozen=True)
class UniPCSteps:
    """A run's steps: each block gets ``solver()``, a fresh solver of ``count`` steps at ``shift``."""
    count: int
    shift: float

    def solver(self) -> UniPCSolver:
        return UniPCSolver(self.count, self.shift)


class UniPC:
    name = "unipc"
    summary = "a UniPC solver per block (LongLive 2.0)"
    steps_help = "the number of solver steps, e.g. 4"
    published = {"sampling_steps": 4}                 # LongLive 2.0's

    def check(self, cfg: StepSettings) -> None:
        if cfg.sampling_steps < 1:
            raise ValueError(f"sampling steps {cfg.sampling_steps} must be ≥ 1 (LongLive 2.0 uses 4)")

    def noise_draws(self, cfg: StepSettings) -> int:
        return 0

    def step_list(self, cfg: StepSettings) -> UniPCSteps:
        return UniPCSteps(cfg.sampling_steps, cfg.shift)

    def denoise(self, block: NoisyBlock, steps: UniPCSteps) -> torch.Tensor:
        """x0 [B, F, C, H, W] in the compute dtype (solved in float32: after the last step x is x0)."""
        solver = steps.solver()
        x = block.noise.to(block.device)
        for value in solver.timesteps.tolist():
            x, t = block.hold(x, block.timestep(value))
            x = block.hold(solver.step(block.flow(x.to(block.dtype), t).float(), x), t)[0]
        return x.to(block.dtype)

    def parse_steps(self, text: str) -> dict:
        """'4' → {"sampling_steps": 4}."""
        check_steps_text(str(text))
        try:
            count = int(str(text).strip())
        except ValueError:
            raise ValueError(f"steps '{text}': the unipc sampler takes a number of solver steps (LongLive 2.0: 4), "
                             "not a list of timesteps; give a whole number such as 4") from None
        if count < 1:
            raise ValueError(f"steps '{text}': the unipc sampler needs at least 1 solver step (LongLive 2.0: 4)")
        check_steps(count, "steps")
        return {"sampling_steps": count}

    def describe(self, settings: StepSettings) -> str:
        return f"UniPC {settings.sampling_steps} steps"
