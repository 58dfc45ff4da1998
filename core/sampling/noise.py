"""Where a run's random numbers come from: two contracts, chosen by ``SamplingConfig.noise``.

``per-block`` (the default): block k (the k-th block of the video, counted from frame 0) draws from its
own CPU generator seeded with ``block_seed(seed, k)``: first its initial noise [B, C, F, H, W] (F = the
block's frames), then, after denoising steps 1 … n−1, one re-noise [B·F, C, H, W] each. A block's noise
depends only on (seed, k) and the shapes: the first 30 s of a 60 s video are the 30 s video, a resumed or
extended run draws what the uninterrupted run drew, and replayed blocks draw nothing.

``reference``: the published implementation's contract (the golden cases use it). One CPU generator
seeded with ``seed``; its first draw is the whole video's initial noise [B, C, T, H, W], then one
re-noise [B·F, C, H, W] per step in loop order. The same seed gives a different video under each contract.

All draws are float32 on the CPU, cast and moved by the caller: same seed, same video on any device.
"""
from __future__ import annotations

import hashlib
from typing import Callable

import torch

NOISE_CONTRACTS = ("per-block", "reference")


def block_seed(seed: int, block: int) -> int:
    """The per-block contract's generator seed of block ``block``: 63 bits of BLAKE2b("<seed>/<block>")."""
    digest = hashlib.blake2b(f"{int(seed)}/{int(block)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1


def initial_noise(seed: int, shape) -> tuple[torch.Tensor, torch.Generator]:
    """The reference contract's first draw: the whole video's noise [B, C, T, H, W], float32, and its generator."""
    g = torch.Generator("cpu").manual_seed(int(seed))
    return torch.randn(tuple(shape), generator=g, dtype=torch.float32), g


class NoiseSource:
    """The draws of one run, block by block: ``block_noise`` at a block's start, then ``renoise`` per step.

    ``skip_block`` stands for a block that is replayed rather than generated (a given prefix): it draws
    what generating it would have drawn where later draws depend on it (reference), nothing otherwise.
    """

    def __init__(self, contract: str, seed: int, shape_bcthw, steps: int, first_steps: int | None = None):
        if contract not in NOISE_CONTRACTS:
            raise ValueError(f"noise contract '{contract}' is unknown; use one of {NOISE_CONTRACTS}")
        self.contract, self.seed, self.steps = contract, int(seed), steps
        self.first_steps = steps if first_steps is None else first_steps     # the block at frame 0
        self.b, self.c, _, self.h, self.w = shape_bcthw
        self._video = self._gen = None
        if contract == "reference":
            noise, self._gen = initial_noise(seed, shape_bcthw)
            self._video = noise.permute(0, 2, 1, 3, 4)                       # [B, T, C, H, W]

    def block_noise(self, block: int, start: int, frames: int) -> torch.Tensor:
        """The block's initial noise [B, F, C, H, W] (float32, CPU)."""
        if self._video is not None:
            return self._video[:, start:start + frames]
        self._gen = torch.Generator("cpu").manual_seed(block_seed(self.seed, block))
        return torch.randn((self.b, self.c, frames, self.h, self.w), generator=self._gen,
                           dtype=torch.float32).permute(0, 2, 1, 3, 4)

    def renoise(self, frames: int) -> torch.Tensor:
        """The next re-noise of the current block: [B·F, C, H, W] (float32, CPU)."""
        return torch.randn((self.b * frames, self.c, self.h, self.w), generator=self._gen, dtype=torch.float32)

    def skip_block(self, block: int, start: int, frames: int) -> None:
        if self.contract == "reference":
            for _ in range((self.first_steps if start == 0 else self.steps) - 1):
                self.renoise(frames)

    def stream(self, block: int, start: int, frames: int) -> tuple[torch.Tensor, Callable[[int, int], torch.Tensor]]:
        """A block's initial noise [B, F, C, H, W] and its re-noise draws, for samplers that keep several blocks in
        flight (the rolling sampler): ``draw(window, offset)`` → [B·F, C, H, W], the block's rows of a draw the size
        of a ``window`` of frames in which it starts at frame ``offset``. per-block: the block's own generator, one
        [B·F] draw each; reference: the run's one generator, one [B·window] draw each (the published code's)."""
        if self._video is not None:
            def draw(window: int, offset: int) -> torch.Tensor:
                full = torch.randn((self.b * window, self.c, self.h, self.w), generator=self._gen, dtype=torch.float32)
                return full.unflatten(0, (self.b, window))[:, offset:offset + frames].flatten(0, 1)
            return self._video[:, start:start + frames], draw
        gen = torch.Generator("cpu").manual_seed(block_seed(self.seed, block))
        noise = torch.randn((self.b, self.c, frames, self.h, self.w), generator=gen, dtype=torch.float32)
        return noise.permute(0, 2, 1, 3, 4), \
            lambda window, offset: torch.randn((self.b * frames, self.c, self.h, self.w), generator=gen,
                                               dtype=torch.float32)
