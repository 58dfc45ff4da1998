"""What a block sampler is to the AR loop: a small object that turns one block's noise into its x0.

The loop (core/sampling/loop.py) owns the model, the cache, the noise draws and the clean frames; it hands
each generated block to the run's sampler as a ``NoisyBlock``. A sampler decides the few things the
published block samplers disagree on:

  step_list     the run's steps, computed once from the config and passed to every block's ``denoise``
  denoise       one block: model calls on its noisy latents, the step list's updates → x0
  noise_draws   fresh noise draws a generated block takes after its initial noise (the noise contract
                counts them: core/sampling/noise.py)
  check         its settings in a SamplingConfig are usable (an error that says which and the fix)
  parse_steps   the text of a "steps" setting (the nodes' widget, the CLI) → the SamplingConfig fields it sets
  describe      its steps in one phrase for run summaries ("steps 1000,750,500,250", "UniPC 4 steps")
  make_cache    (optional) its own attention context instead of the KV cache (the rolling sampler's window
                attends an anchor, clean frames and several noisy blocks at once: core/context/rolling.py)

Samplers by name: core/sampling/samplers/registry.py. The config names one (``SamplingConfig.sampler``); the
loop never asks which.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol, runtime_checkable

import torch


@runtime_checkable
class StepSettings(Protocol):
    """The settings a sampler reads (a ``SamplingConfig``; ``describe`` also takes a family's ``FamilyDefaults``)."""
    steps: tuple[int, ...]        # renoise: the denoising timesteps
    sampling_steps: int           # unipc: solver steps
    shift: float                  # the flow-matching timestep shift


@dataclass
class NoisyBlock:
    """One generated block as a sampler sees it.

    ``noise`` [B, F, C, H, W] float32 (CPU): the block's initial noise. ``flow(x, t)``: the model on x
    [B, F, C, H, W] in the compute dtype at timesteps t [B, F] (float32, 0..1000) → flow, same layout and
    dtype. ``fresh_noise()``: the block's next noise draw [B·F, C, H, W] float32 (CPU); a sampler draws
    exactly ``noise_draws`` of them. ``clean`` [B, G, C, H, W] (or None): the given frames at the block's
    start, held clean at timestep 0 while the rest of the block is denoised (``start_block`` "clamp"). ``index``,
    ``start`` and ``run``: for a sampler that works across blocks (core/sampling/samplers/rolling.py).
    """
    noise: torch.Tensor
    flow: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    fresh_noise: Callable[[], torch.Tensor]
    clean: torch.Tensor | None
    device: torch.device
    dtype: torch.dtype
    index: int = 0                # the block's number in the video and its first frame
    start: int = 0
    run: object = None            # the loop (core/sampling/loop.py): its noise source, cache and frame count,
                                  # for a sampler that keeps several blocks in flight (rolling)

    @property
    def shape(self) -> tuple[int, int]:
        """(B, F): prompts and frames of the block."""
        return tuple(self.noise.shape[:2])

    def timestep(self, value: float) -> torch.Tensor:
        """[B, F] float32 on the device, every frame at ``value``."""
        return torch.full(self.shape, float(value), device=self.device, dtype=torch.float32)

    def hold(self, x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, F, C, H, W] and t [B, F] with the given frames set clean at timestep 0 (none given: unchanged)."""
        if self.clean is None:
            return x, t
        n = self.clean.shape[1]
        x, t = x.clone(), t.clone()
        x[:, :n], t[:, :n] = self.clean.to(x.dtype), 0
        return x, t


class BlockSampler(Protocol):
    """A block sampler (one object per name, stateless; per-run state lives in its step list)."""
    name: str
    summary: str                  # one phrase for help texts
    steps_help: str               # what its "steps" text is
    published: dict               # its step fields (SamplingConfig) as its source publishes them

    def check(self, cfg: StepSettings) -> None: ...

    def noise_draws(self, cfg: StepSettings) -> int: ...

    def step_list(self, cfg: StepSettings) -> object: ...

    def denoise(self, block: NoisyBlock, steps: object) -> torch.Tensor:
        """The block's x0 [B, F, C, H, W] in the compute dtype (``steps``: this sampler's ``step_list``)."""

    def parse_steps(self, text: str) -> dict: ...

    def describe(self, settings: StepSettings) -> str: ...
