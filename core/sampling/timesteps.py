"""Flow-matching schedule of the Wan AR backbones (shift 5, 1000 train steps, sigma_min 0)."""
from __future__ import annotations

from typing import Sequence

import torch


class FlowMatchTimesteps:
    """sigma grid: s = linspace(1, 0, N+1)[:-1]; sigma = shift·s / (1 + (shift−1)·s); t = N·sigma (float32)."""

    def __init__(self, shift: float = 5.0, num_train_steps: int = 1000):
        self.num_train_steps = num_train_steps
        s = torch.linspace(1.0, 0.0, num_train_steps + 1)[:-1]
        self.sigmas = shift * s / (1 + (shift - 1) * s)
        self.timesteps = self.sigmas * num_train_steps
        self._converted: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def denoising_timesteps(self, steps: Sequence[int], warp: bool = True) -> torch.Tensor:
        """The per-step timesteps [S] (float32). Warped: grid timestep at index N − step."""
        steps_t = torch.tensor(list(steps), dtype=torch.long)
        if not warp:
            return steps_t.to(torch.float32)
        if (steps_t < 1).any() or (steps_t > self.num_train_steps).any():
            raise ValueError(f"denoising steps {list(steps)} must lie in 1..{self.num_train_steps}")
        grid = torch.cat([self.timesteps, torch.zeros(1)])
        return grid[self.num_train_steps - steps_t]

    def _sigma(self, t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Grid sigma nearest to each timestep, t [N] → [N, 1, 1, 1]."""
        grid_t, grid_s = self._grids(t.device, dtype)
        idx = torch.argmin((grid_t.unsqueeze(0) - t.to(dtype).unsqueeze(1)).abs(), dim=1)
        return grid_s[idx].reshape(-1, 1, 1, 1)

    def _grids(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """(timesteps, sigmas) on ``device`` in ``dtype``, converted once (every forward looks them up)."""
        key = (device, dtype)
        if key not in self._converted:
            self._converted[key] = (self.timesteps.to(device=device, dtype=dtype),
                                    self.sigmas.to(device=device, dtype=dtype))
        return self._converted[key]

    def x0_from_flow(self, flow: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """x0 = x_t − sigma_t·flow in float64; flow/xt [N, C, H, W], t [N] → x0 in flow's dtype."""
        sigma = self._sigma(t, torch.float64)
        return (xt.double() - sigma * flow.double()).to(flow.dtype)

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """(1 − sigma_t)·x0 + sigma_t·noise (sigma in float32); x0/noise [N, C, H, W], t [N]."""
        sigma = self._sigma(t, torch.float32)
        return ((1 - sigma) * x0 + sigma * noise).type_as(noise)
