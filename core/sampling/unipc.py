"""LongLive 2.0's block sampler: a fresh UniPC multistep solver per block (flow prediction, predict-x0,
order 2 with the B(h) = e^h − 1 variant "bh2", first order at the last step), no re-noising.

Sigmas: N steps of a linear grid from σ_max = 0.999 (the 1000-step training grid's largest value in
float32) down to 0, shifted (σ ← shift·σ / (1 + (shift − 1)·σ)), then 0 appended: for 4 steps at shift
5, [0.99980, 0.93727, 0.83306, 0.62469, 0]. The model is fed ``timesteps`` = ⌊1000·σ⌋ (999, 937, 833,
624) while the solver uses the unrounded σ, as the published code does. Because the last step is first
order towards σ = 0, a block's output is x0 = x − σ_last·flow of the last model call.

The arithmetic follows the published solver (diffusers' UniPCMultistepScheduler adapted to flow
matching, in Wan2.2's ``fm_solvers_unipc.py``) step for step in float32; the state is kept in float32
whatever the model's compute dtype.
"""
from __future__ import annotations

import numpy as np
import torch

NUM_TRAIN_STEPS = 1000


def unipc_sigmas(steps: int, shift: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(sigmas float32 [steps + 1] ending in 0, model timesteps int64 [steps])."""
    sigma_max = float(torch.tensor(1.0 - 1.0 / NUM_TRAIN_STEPS, dtype=torch.float32))   # 0.999 in float32
    s = np.linspace(sigma_max, 0.0, steps + 1)[:-1]
    s = shift * s / (1 + (shift - 1) * s)
    timesteps = torch.from_numpy(s * NUM_TRAIN_STEPS).to(torch.int64)
    return torch.from_numpy(np.concatenate([s, [0.0]]).astype(np.float32)), timesteps


def _lambda(sigma: torch.Tensor) -> torch.Tensor:
    """log(α/σ) with α = 1 − σ (flow matching); +inf at σ = 0."""
    return torch.log(1 - sigma) - torch.log(sigma)


class UniPCSolver:
    """One block's solver. ``step(flow, x)`` after each model call on ``x`` at ``timesteps[i]`` → the next
    x (after the last step: the block's x0). Tensors any shape; float32."""

    def __init__(self, steps: int, shift: float, order: int = 2):
        self.sigmas, self.timesteps = unipc_sigmas(steps, shift)
        self.order = order
        self.i = 0
        self.x0s: list[torch.Tensor] = []      # converted model outputs (x0 predictions), newest last
        self.last_sample: torch.Tensor | None = None
        self.last_order = 0

    @property
    def sigma(self) -> torch.Tensor:
        """σ of the current step (0-dim float32)."""
        return self.sigmas[self.i]

    def step(self, flow: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        i, n = self.i, len(self.timesteps)
        x0 = x - self.sigmas[i] * flow
        if i > 0 and self.last_sample is not None:
            x = self._correct(x0)
        self.x0s = (self.x0s + [x0])[-self.order:]
        order = min(self.order, n - i, len(self.x0s))      # warm-up, then first order at the last step
        self.last_sample, self.last_order = x, order
        out = self._predict(x, order)
        self.i += 1
        return out

    def _coefficients(self, t: int, s0: int, previous: list[int]):
        """h, the ratios r_k of the earlier points and the B(h)-scaled weights b of the UniPC system."""
        lam_t, lam_s0 = _lambda(self.sigmas[t]), _lambda(self.sigmas[s0])
        h = lam_t - lam_s0
        rks = [(_lambda(self.sigmas[s]) - lam_s0) / h for s in previous] + [1.0]
        hh = -h
        h_phi_1 = torch.expm1(hh)
        h_phi_k = h_phi_1 / hh - 1
        b_h = torch.expm1(hh)
        rks = torch.tensor(rks)
        r_rows, b, factorial = [], [], 1
        for k in range(1, len(rks) + 1):
            r_rows.append(torch.pow(rks, k - 1))
            b.append(h_phi_k * factorial / b_h)
            factorial *= k + 1
            h_phi_k = h_phi_k / hh - 1 / factorial
        return h_phi_1, b_h, rks, torch.stack(r_rows), torch.tensor(b)

    def _predict(self, x: torch.Tensor, order: int) -> torch.Tensor:
        i = self.i
        sigma_t, sigma_s0 = self.sigmas[i + 1], self.sigmas[i]
        m0 = self.x0s[-1]
        previous = [i - k for k in range(1, order)]
        h_phi_1, b_h, rks, _, _ = self._coefficients(i + 1, i, previous)
        out = sigma_t / sigma_s0 * x - (1 - sigma_t) * h_phi_1 * m0
        if order == 2:           # the published second-order predictor uses ρ = 0.5
            d1 = (self.x0s[-2] - m0) / rks[0]
            out = out - (1 - sigma_t) * b_h * (0.5 * d1)
        elif order > 2:
            raise ValueError(f"UniPC order {order} is not implemented (LongLive 2.0 uses 2)")
        return out

    def _correct(self, x0: torch.Tensor) -> torch.Tensor:
        """The corrector (UniC) of the previous step: its start point corrected with the model's new x0."""
        i, order = self.i, self.last_order
        sigma_t, sigma_s0 = self.sigmas[i], self.sigmas[i - 1]
        m0 = self.x0s[-1]
        previous = [i - (k + 1) for k in range(1, order)]
        h_phi_1, b_h, rks, r, b = self._coefficients(i, i - 1, previous)
        rhos = torch.tensor([0.5]) if order == 1 else torch.linalg.solve(r, b)
        res = 0
        for k in range(order - 1):
            res = res + rhos[k] * ((self.x0s[-(k + 2)] - m0) / rks[k])
        out = sigma_t / sigma_s0 * self.last_sample - (1 - sigma_t) * h_phi_1 * m0
        return out - (1 - sigma_t) * b_h * (res + rhos[-1] * (x0 - m0))
